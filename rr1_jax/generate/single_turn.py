"""`generate`: one-call, single-turn generation over the KV-cache engine (eval baselines, the demo)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from flax import nnx

from rr1_jax.generate.buckets import pad_batch, pick_bucket
from rr1_jax.generate.sampler import Sampler, StopReason
from rr1_jax.generate.sampling import SamplingParams
from rr1_jax.generate.stops import StopMatcher


def generate(graphdef: nnx.GraphDef, params, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             sampling: SamplingParams = SamplingParams(greedy=True), stop: Optional[StopMatcher] = None,
             eos_ids: Sequence[int] = (), pad_id: int = 0, seed: int = 0,
             prompt_buckets: Optional[Sequence[int]] = None) -> list[tuple[list[int], np.ndarray, str]]:
    """Complete each prompt: [(sampled ids, behaviour log-probs, stop reason name)] in prompt order.

    Prompts are left-padded to the smallest of `prompt_buckets` (default: the longest prompt) that fits.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt and every prompt needs at least one token")
    config = nnx.merge(graphdef, params).config
    longest = max(len(p) for p in prompts)
    width = pick_bucket(longest, prompt_buckets) if prompt_buckets else longest
    tokens, lengths = pad_batch(prompts, width, pad_id, align="left")
    sampler = Sampler(graphdef, sampling, stop=stop, eos_ids=eos_ids, pad_id=pad_id)  # jits are shared
    state = sampler.init_state(config, len(prompts), width + max_new_tokens, seed=seed, turn_budget=max_new_tokens)
    state = sampler.prefill(params, state, tokens, lengths)
    state, out = sampler.decode_segment(params, state, max_new_tokens)
    ids, logprobs, counts, reasons = (np.asarray(x) for x in (out.tokens, out.logprobs, out.num_tokens,
                                                               out.stop_reason))
    return [(ids[b, :counts[b]].tolist(), logprobs[b, :counts[b]], StopReason(int(reasons[b])).name)
            for b in range(len(prompts))]
