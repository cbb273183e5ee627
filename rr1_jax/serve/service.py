"""What one served model needs: the engine (slots + continuous batcher), the tokenizer, the prompt, the pool client.

`ServeConfig` holds the serving knobs; `Service` builds the jitted engine for a loaded policy, owns the candidate
pool client (router mode), and turns a validated request into a job. Two modes:

* "router": the policy is a Router-R1 router. The last user message is the question, rendered with the routing
  template over the candidate pool; the policy's routes are executed against the pool and the final `<answer>` is
  the reply. Decoding stops at `</search>` / `</answer>` / EOS.
* "model": the policy is a plain chat model (e.g. the bundled SmolLM2). The messages are rendered with its chat
  template and it generates until EOS or `max_tokens` — so a local model can sit in a candidate pool.

Shapes: prompts and observations are written at the `widths` buckets; the KV cache holds the longest prompt
bucket, every generation of the request's maximum and every observation bucket, so a request can never run out
of room before its own limits.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import time
from typing import Optional, Sequence

from rr1_jax.generate.buckets import pick_bucket, round_up
from rr1_jax.generate.sampler import Sampler
from rr1_jax.generate.sampling import SamplingParams
from rr1_jax.generate.slots import SlotBatch
from rr1_jax.model.tokenizer import chat_prompt_ids, stop_token_ids
from rr1_jax.rollout.candidates import CandidatePool
from rr1_jax.rollout.policy import engine_policy
from rr1_jax.rollout.pool import PoolClient, PoolConfig
from rr1_jax.rollout.prompts import compact_routing_template, render_prompt
from rr1_jax.serve.engine import ContinuousBatcher
from rr1_jax.serve.jobs import ChatJob, Job, RouterJob, RouterRules
from rr1_jax.serve.protocol import ChatRequest, Limits, RequestError

MODES = ("router", "model")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Serving knobs. Sizes are tokens; `max_cost` is in the pool's metered unit (None: no default cap)."""

    mode: str = "router"
    model_name: str = "rr1-router"  # the `model` clients send (and GET /v1/models lists)
    num_slots: int = 8
    segment_steps: int = 16  # decode steps per engine call (how often new requests and replies get in)
    max_turn_tokens: int = 512  # router: tokens per generation; model: the max_tokens cap
    max_routed_calls: int = 4  # router: routed generations per request (one final generation follows)
    max_obs_length: int = 600  # router: observation tokens kept (head)
    max_prompt_tokens: int = 2048
    widths: Sequence[int] = ()  # write buckets (prompts and observations); () = 64, 256, 1024, … up to the prompt
    timeout_s: float = 300.0  # per request (default and cap)
    max_cost: Optional[float] = None
    max_queue: int = 256  # requests waiting for a slot before the server answers 429
    max_body_bytes: int = 1 << 20
    greedy: bool = True  # else upstream's sampling (T=1, top-p 0.95)
    warmup: bool = True  # compile every engine program before accepting requests
    invalid_observation: str = ""  # router: appended after a turn with no valid action
    resolve_mode: str = "upstream"  # router: candidate name matching ("upstream" substrings or "exact")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"ServeConfig.mode={self.mode!r}: choose one of {MODES}")
        sizes = ("num_slots", "segment_steps", "max_turn_tokens", "max_obs_length", "max_prompt_tokens",
                 "max_queue", "max_body_bytes")
        bad = [f for f in sizes if not getattr(self, f) > 0] + (["max_routed_calls"] if self.max_routed_calls < 0
                                                                  else [])
        bad += ["timeout_s"] if not self.timeout_s > 0 else []
        bad += ["max_cost"] if self.max_cost is not None and not self.max_cost >= 0 else []
        if bad:
            raise ValueError(f"ServeConfig: {bad} must be positive (max_routed_calls, max_cost: >= 0)")
        if not self.model_name.strip():
            raise ValueError("ServeConfig.model_name must be a non-empty name")


def default_widths(max_len: int, smallest: int = 64, factor: int = 4) -> list[int]:
    """64, 256, 1024, … below `max_len`, then `max_len` rounded up to a multiple of 64."""
    widths, w = [], smallest
    while w < max_len:
        widths.append(w)
        w *= factor
    return widths + [round_up(max_len, smallest)]


class Service:
    """A loaded policy served in one mode. `start()`/`stop()` run inside the server's event loop."""

    def __init__(self, policy, config: ServeConfig, pool: Optional[CandidatePool] = None,
                 pool_config: Optional[PoolConfig] = None, template: Optional[str] = None):
        self.policy, self.config = policy, config
        self.tokenizer = policy.tokenizer
        c = config
        router = c.mode == "router"
        if router and pool is None:
            raise ValueError("router mode needs a candidate pool (config.pool)")
        self.pool, self.pool_config = pool, pool_config or PoolConfig()
        self.template = (template or compact_routing_template(pool)) if router else None
        self.widths = sorted(set(c.widths)) if c.widths else default_widths(max(c.max_prompt_tokens,
                                                                               c.max_obs_length if router else 0))
        prompt_width = pick_bucket(c.max_prompt_tokens, self.widths)
        calls = c.max_routed_calls if router else 0
        obs_width = pick_bucket(c.max_obs_length, self.widths) if router else 0
        self.cache_len = prompt_width + (calls + 1) * c.max_turn_tokens + calls * obs_width
        self.limits = Limits(max_tokens=(calls + 1) * c.max_turn_tokens, max_routed_calls=calls,
                             timeout_s=c.timeout_s, max_cost=c.max_cost)
        sampling = SamplingParams(greedy=True) if c.greedy else SamplingParams.router_r1()
        if router:
            sampler = engine_policy(policy.graphdef, policy.params, policy.config, self.tokenizer, 1, calls,
                                    c.max_turn_tokens, [prompt_width], [max(obs_width, 1)], sampling).sampler
        else:
            if self.tokenizer.eos_token_id is None:
                raise ValueError("model mode needs a tokenizer with an EOS token")
            sampler = Sampler(policy.graphdef, sampling, eos_ids=stop_token_ids(self.tokenizer, policy.config),
                              pad_id=self.tokenizer.pad_token_id)
        self.slots = SlotBatch(sampler, policy.params, policy.config, c.num_slots, self.cache_len, self.widths)
        self.batcher = ContinuousBatcher(self.slots, c.segment_steps, c.max_queue)
        self.rules = RouterRules(c.max_turn_tokens, c.max_obs_length, resolve_mode=c.resolve_mode,
                                 invalid_observation=c.invalid_observation)
        self.client: Optional[PoolClient] = None
        self._seeds = itertools.count(1)
        self.created = int(time.time())

    @property
    def router(self) -> bool:
        return self.config.mode == "router"

    def secrets(self) -> list[str]:
        """API keys this service may hold (to redact from logs)."""
        names = {c.api_key_env for c in self.pool} if self.pool is not None else set()
        return [os.environ[n] for n in sorted(names) if os.environ.get(n)]

    async def start(self) -> None:
        if self.router:
            self.client = PoolClient(self.pool, self.pool_config)
            await self.client.__aenter__()
        if self.config.warmup:
            await asyncio.to_thread(self.slots.warmup, self.config.segment_steps)
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        if self.client is not None:
            await self.client.__aexit__(None, None, None)
            self.client = None

    def prompt_ids(self, request: ChatRequest) -> list:
        if self.router:
            ids = render_prompt(self.tokenizer, request.question, self.template)
        else:
            ids = chat_prompt_ids(self.tokenizer, request.messages)
        if len(ids) > self.config.max_prompt_tokens:
            raise RequestError(f"the prompt has {len(ids)} tokens, more than this server's max_prompt_tokens="
                               f"{self.config.max_prompt_tokens}; shorten the messages", param="messages",
                               code="context_length_exceeded")
        return ids

    def make_job(self, request: ChatRequest) -> Job:
        prompt = self.prompt_ids(request)
        seed = request.seed if request.seed is not None else next(self._seeds)
        if self.router:
            return RouterJob(prompt, self.tokenizer, self.client, self.rules, request.max_tokens,
                             request.max_routed_calls, request.max_cost, seed, request.stream)
        return ChatJob(prompt, self.tokenizer, request.max_tokens, seed, request.stream)
