"""A batch's episodes rolled out in waves of the engine's slots (`rollout.slots_per_wave`).

The KV cache and the prefill's scores scale with the slots decoded at once, not with the batch, so a 3B policy
on one GPU can roll out a 64-episode batch 8 or 16 at a time (docs/scaling.md). Each episode samples with the
PRNG key of its batch position (`EnginePolicy.start(slot_ids=...)`), so the waves draw what one wave of every
episode would; the trajectory rows come back in batch order, padded to the widest wave.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from rr1_jax.rollout.episode import RolloutResult, RolloutTiming
from rr1_jax.rollout.pool import PoolClient
from rr1_jax.rollout.trajectory import concat_rows
from rr1_jax.rollout.worker import RolloutConfig, rollout


async def rollout_in_waves(policy, client: PoolClient, tokenizer, prompts: Sequence[Sequence[int]],
                           config: RolloutConfig, seed: int, num_rows: int,
                           slot_ids: Optional[Sequence[int]] = None) -> RolloutResult:
    """Roll out `prompts` `policy.num_slots` at a time; `num_rows` trajectory rows (>= len(prompts); the rest
    pad); `slot_ids`: each prompt's position in the global batch (default: its index)."""
    size = policy.num_slots
    if len(prompts) <= size:  # one wave: exactly the plain rollout
        ids = None if slot_ids is None else list(slot_ids)[:size]
        ids = ids if ids is None else ids + [0] * (size - len(ids))  # idle slots: any key
        result = await rollout(policy, client, tokenizer, prompts, config, seed, ids)
        if num_rows == size:
            return result
        return dataclasses.replace(result, trajectories=concat_rows([result.trajectories], num_rows, policy.pad_id))
    ids = list(range(len(prompts))) if slot_ids is None else list(slot_ids)[:len(prompts)]
    if len(ids) < len(prompts):
        raise ValueError(f"{len(ids)} slot ids for {len(prompts)} prompts")
    waves = []
    for start in range(0, len(prompts), size):
        chunk = prompts[start:start + size]
        wave_ids = ids[start:start + size]
        wave_ids += [wave_ids[-1]] * (size - len(wave_ids))  # idle slots of a short last wave: any key
        waves.append(await rollout(policy, client, tokenizer, chunk, config, seed, wave_ids))
    timing = RolloutTiming(**{f.name: sum(getattr(w.timing, f.name) for w in waves)
                              for f in dataclasses.fields(RolloutTiming)})
    trajectories = concat_rows([w.trajectories for w in waves], num_rows, policy.pad_id)
    return RolloutResult(trajectories, [e for w in waves for e in w.episodes], timing)
