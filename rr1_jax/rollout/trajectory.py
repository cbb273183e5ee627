"""The trajectory batch handed from the rollout to the trainer, in verl's layout.

Each row is `[prompt (left-padded to P) | response (right-padded to R)]`. The response holds every turn's
policy tokens *and* the observation tokens (`\\n\\n<information>…</information>\\n\\n`) in order; `loss_mask`
marks the policy-generated ones. Log-prob, value and entropy for response index t come from the network output
at absolute position P + t - 1 (the state before token t). Rows added only to pad the batch have all-zero masks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
from flax import struct

Array = jax.Array


@struct.dataclass
class Trajectories:
    tokens: Array  # [N, P+R] int32
    attention_mask: Array  # [N, P+R] bool: every real token (prompt, policy and observation)
    positions: Array  # [N, P+R] int32: (cumsum(mask) - 1) * mask
    loss_mask: Array  # [N, R] bool: policy-generated response tokens only
    old_logprobs: Array  # [N, R] f32: behaviour log-probs of the sampled ids (0 where loss_mask is 0)
    row_valid: Array  # [N] bool: False for rows that only pad the batch
    prompt_width: int = struct.field(pytree_node=False)

    @property
    def response_width(self) -> int:
        return self.tokens.shape[1] - self.prompt_width

    @property
    def response_mask(self) -> Array:
        """[N, R] every real response token, observations included (verl's `resp_mask`)."""
        return self.attention_mask[:, self.prompt_width:]


def pick_width(needed: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= needed (static shapes: one compiled program per bucket)."""
    for b in sorted(buckets):
        if b >= needed:
            return b
    raise ValueError(f"sequence of {needed} tokens exceeds the largest bucket {max(buckets)}; "
                     f"raise the bucket sizes in the config")


def build_trajectories(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
                       policy_flags: Sequence[Sequence[bool]], logprobs: Optional[Sequence[Sequence[float]]],
                       prompt_width: int, response_width: int, pad_id: int, num_rows: Optional[int] = None,
                       ) -> Trajectories:
    """Host-side assembly (numpy) of a batch from per-row token lists; `num_rows` pads with masked dummy rows.

    prompts[i]: prompt ids (kept: the last `prompt_width`); responses[i]: policy + observation ids in order;
    policy_flags[i][j]: responses[i][j] was sampled by the policy; logprobs[i][j]: its behaviour log-prob.
    """
    n = len(prompts)
    rows = n if num_rows is None else num_rows
    if rows < n:
        raise ValueError(f"num_rows={rows} is smaller than the batch ({n})")
    width = prompt_width + response_width
    tokens = np.full((rows, width), pad_id, np.int32)
    mask = np.zeros((rows, width), bool)
    loss_mask = np.zeros((rows, response_width), bool)
    old_lp = np.zeros((rows, response_width), np.float32)
    for i in range(n):
        p = list(prompts[i])[-prompt_width:]
        r = list(responses[i])
        if len(r) > response_width:
            raise ValueError(f"row {i}: response of {len(r)} tokens exceeds response_width={response_width}")
        if len(policy_flags[i]) != len(r):
            raise ValueError(f"row {i}: {len(policy_flags[i])} policy flags for {len(r)} response tokens")
        tokens[i, prompt_width - len(p):prompt_width] = p
        mask[i, prompt_width - len(p):prompt_width] = True
        tokens[i, prompt_width:prompt_width + len(r)] = r
        mask[i, prompt_width:prompt_width + len(r)] = True
        loss_mask[i, :len(r)] = np.asarray(policy_flags[i], bool)
        if logprobs is not None:
            old_lp[i, :len(r)] = np.where(loss_mask[i, :len(r)], np.asarray(logprobs[i], np.float32), 0.0)
    positions = (np.cumsum(mask, axis=1) - 1) * mask
    row_valid = np.arange(rows) < n
    return Trajectories(tokens, mask, positions.astype(np.int32), loss_mask, old_lp, row_valid, prompt_width)


def pad_trajectories(traj, prompt_width: int, response_width: int, pad_id: int):
    """The same rows with the prompt left-padded to `prompt_width` and the response right-padded to
    `response_width` (masked pad columns; positions recomputed, so they are unchanged for real tokens)."""
    p0, r0 = traj.prompt_width, traj.response_width
    if (p0, r0) == (prompt_width, response_width):
        return traj
    if prompt_width < p0 or response_width < r0:
        raise ValueError(f"cannot shrink trajectories from ({p0}, {r0}) to ({prompt_width}, {response_width})")
    left, right = prompt_width - p0, response_width - r0

    def cols(x, value):
        x = np.asarray(x)
        return np.pad(x, ((0, 0), (left, right)), constant_values=value)

    mask = cols(traj.attention_mask, False)
    positions = ((np.cumsum(mask, axis=1) - 1) * mask).astype(np.int32)
    resp = ((0, 0), (0, right))
    return Trajectories(cols(traj.tokens, pad_id).astype(np.int32), mask, positions,
                        np.pad(np.asarray(traj.loss_mask), resp), np.pad(np.asarray(traj.old_logprobs), resp),
                        np.asarray(traj.row_valid), prompt_width)


def concat_rows(parts: Sequence[Trajectories], num_rows: int, pad_id: int) -> Trajectories:
    """The rows of `parts` in order at their widest prompt and response, then padding rows up to `num_rows`."""
    p = max(x.prompt_width for x in parts)
    r = max(x.response_width for x in parts)
    parts = [pad_trajectories(x, p, r, pad_id) for x in parts]
    fields = ("tokens", "attention_mask", "positions", "loss_mask", "old_logprobs", "row_valid")
    rows = {f: np.concatenate([np.asarray(getattr(x, f)) for x in parts]) for f in fields}
    missing = num_rows - rows["tokens"].shape[0]
    if missing < 0:
        raise ValueError(f"{rows['tokens'].shape[0]} rows do not fit in num_rows={num_rows}")
    fill = {"tokens": pad_id, "attention_mask": False, "positions": 0, "loss_mask": False, "old_logprobs": 0.0,
            "row_valid": False}
    rows = {f: np.concatenate([x, np.full((missing,) + x.shape[1:], fill[f], x.dtype)]) for f, x in rows.items()}
    return Trajectories(**rows, prompt_width=p)
