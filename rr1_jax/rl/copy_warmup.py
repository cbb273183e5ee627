"""Copy warm-up: a policy trained from scratch first learns to repeat random token sequences (induction).

A router must copy names it never saw in training from the question into its query and from a candidate's reply
into its answer. A tiny model trained only on demonstrations memorises the training names instead. A few
hundred steps on "random sequence, then the same sequence again" (loss on the repeat) form the copying circuit
(previous-token head + induction head) for every token of the vocabulary. This stands in for the pre-training a
real LLM router starts from: in measured runs the demo policy repeated sequences with loss 0.02 nats/token
after 250 steps (44 s on 2 CPU cores).
"""
from __future__ import annotations

import numpy as np

from rr1_jax.rollout.trajectory import Trajectories, build_trajectories


def copy_trajectories(tokenizer, num_rows: int, length: int, seed: int = 0, gap: int = 0) -> Trajectories:
    """`num_rows` rows: a random sequence of ordinary tokens, then `0..gap` random filler tokens, as the prompt;
    the sequence again as the response. With `gap > 0` sequence lengths vary in `[length // 2, length]` too.

    A fixed distance between a token and its copy lets a model copy by position alone (attend `length` tokens
    back), which does not carry over to copying a name from a question; varying it forces content-based
    copying (find the earlier occurrence of the current token, emit the token after it). Tokens are drawn
    uniformly from the vocabulary without the special and added tokens (pad, eos, router tags). The first
    repeated token cannot be predicted from the prefix, so it is left out of the loss.
    """
    if num_rows < 1 or length < 2 or gap < 0:
        raise ValueError(f"copy warm-up needs num_rows >= 1, length >= 2 and gap >= 0, got {num_rows}, {length}, "
                         f"{gap}")
    excluded = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    ordinary = np.array(sorted(set(range(len(tokenizer))) - excluded), np.int32)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(2, length // 2), length + 1, num_rows) if gap else np.full(num_rows, length)
    fillers = rng.integers(0, gap + 1, num_rows)
    prompts, responses, flags = [], [], []
    for n, f in zip(lengths, fillers):
        sequence = rng.choice(ordinary, size=n).tolist()
        prompts.append(sequence + rng.choice(ordinary, size=f).tolist())
        responses.append(sequence)
        flags.append([False] + [True] * (n - 1))
    return build_trajectories(prompts, responses, flags, None, length + gap, length, tokenizer.pad_token_id)
