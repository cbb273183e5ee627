"""Several processes (hosts) training one policy: who rolls out which slots, and the few collectives they share.

    P processes, global batch B = P * L. Process p loads only its data shard (`QABatchIterator` gives it every
    P-th row of each epoch's permutation, L per step), so its local prompt i is the batch's data position
    i * P + p. With n episodes per prompt (`rollout.n_agent`, a GRPO group) its local slot k is episode k % n of
    local prompt k // n, global episode ((k // n) * P + p) * n + k % n: it samples with that episode's PRNG key —
    the key a single process gives the same episode — and its GRPO group id is the prompt's data position.

    rollout  each process decodes its own L·n slots on its OWN devices (a process-local mesh) with a local copy
             of the actor weights, and makes only its own candidate-LLM calls. No program in the rollout spans
             processes, so hosts need not agree on the segment/turn schedule (replies arrive at different times).
    join     hosts agree on the trajectory widths (max over processes) and pad to them; costs are all-gathered
             so every process feeds the same CostNormalizer the whole batch in data order; per-row metrics are
             averaged over all processes.
    update   each process's rows become one global array (`jax.make_array_from_process_local_data`, in
             PPOTrainer.shard_batch) and every process runs the same jitted PPO programs on the global mesh.
    weights  `decode_params`: ONE jitted reshard on the global mesh to the decode layout (an all-gather over
             fsdp); each process then wraps the shards its devices hold as a local array (no copy, no host
             round trip).

With one process every method is the identity (or the existing single-process call), so nothing changes there.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rr1_jax.parallel.mesh import DECODE_RULES, ShardingRules, make_mesh, param_shardings
from rr1_jax.rollout.trajectory import pad_trajectories


def spans_processes(mesh: Mesh) -> bool:
    """Whether the mesh holds devices of other processes (its arrays are not fully addressable here)."""
    return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def local_submesh(mesh: Mesh) -> Mesh:
    """This process's devices as a mesh with the same axes: the block of `mesh` they occupy when it is one
    (so a local array can reuse the global array's shards), else all local devices on the fsdp axis."""
    mine = np.vectorize(lambda d: d.process_index == jax.process_index())(mesh.devices)
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(mine))
    if mine[box].all() and mine.sum() == mine[box].size:
        return Mesh(mesh.devices[box], mesh.axis_names)
    return make_mesh(1, -1, 1, devices=jax.local_devices())


@functools.lru_cache(maxsize=16)
def _resharder(shardings: tuple):
    return jax.jit(lambda leaves: leaves, out_shardings=list(shardings))


def local_copy(tree, mesh: Mesh, local_mesh: Mesh, rules: Optional[ShardingRules] = DECODE_RULES):
    """A process-local copy of a global pytree of arrays (nnx.State of params or plain arrays).

    One jitted reshard on `mesh` (collective: every process calls it) to the `rules` layout (None: replicated),
    then each leaf is rebuilt from this process's shards on `local_mesh`. A leaf whose sharding does not map
    onto the local mesh shard for shard (an axis that spans processes) is replicated instead.
    """
    leaves, treedef = jax.tree.flatten(tree)
    if rules is None:
        specs = [PartitionSpec()] * len(leaves)
    else:
        specs = [s.spec for s in jax.tree.leaves(param_shardings(tree, rules, mesh),
                                                 is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))]
    targets = []
    for x, spec in zip(leaves, specs):
        global_s, local_s = NamedSharding(mesh, spec), NamedSharding(local_mesh, spec)
        if not _same_local_shards(global_s, local_s, x.shape):
            global_s, local_s = NamedSharding(mesh, PartitionSpec()), NamedSharding(local_mesh, PartitionSpec())
        targets.append((global_s, local_s))
    with jax.set_mesh(mesh):
        out = _resharder(tuple(g for g, _ in targets))(leaves)
    local = [jax.make_array_from_single_device_arrays(x.shape, local_s, [s.data for s in x.addressable_shards])
             for x, (_, local_s) in zip(out, targets)]
    return jax.tree.unflatten(treedef, local)


def _same_local_shards(global_s: NamedSharding, local_s: NamedSharding, shape) -> bool:
    want = global_s.devices_indices_map(tuple(shape))
    got = local_s.devices_indices_map(tuple(shape))
    return all(want.get(d) == idx for d, idx in got.items())


def allgather(x: np.ndarray) -> np.ndarray:
    """[P, ...] every process's `x` (same shape and dtype on all), in process order. Collective."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(x)))


class HostLayout:
    """This process's place in the run: its share of the batch, its decode mesh, and the collectives the
    training loop calls at fixed points (the same calls in the same order on every process)."""

    def __init__(self, train_mesh: Mesh, *, episodes_per_prompt: int = 1, process_index: Optional[int] = None,
                 process_count: Optional[int] = None, gather=None):
        """Defaults: the JAX runtime's process index/count and `allgather` (tests pass stand-ins)."""
        self.train_mesh = train_mesh
        self.per_prompt = episodes_per_prompt
        self.index = jax.process_index() if process_index is None else process_index
        self.count = jax.process_count() if process_count is None else process_count
        self.multi = self.count > 1 and (process_count is not None or spans_processes(train_mesh))
        self.decode_mesh = local_submesh(train_mesh) if self.multi else train_mesh
        self._gather = gather or allgather

    @property
    def is_primary(self) -> bool:
        return self.index == 0

    def local_batch_size(self, global_batch: int, num_records: Optional[int] = None) -> int:
        """Prompts (= rollout slots) of this process per iteration. With `num_records` (the training set's size)
        it also checks that no process is ever left without a real question in an epoch's last batch."""
        if not self.multi:
            return global_batch
        if global_batch % self.count:
            raise ValueError(f"data.batch_size={global_batch} must be a multiple of the process count "
                             f"{self.count} (each process rolls out batch_size / processes slots)")
        local = global_batch // self.count
        if num_records is not None:
            shard = -(-num_records // self.count)  # QABatchIterator pads every shard to this length
            if shard < local:
                raise ValueError(f"{num_records} training questions over {self.count} processes are {shard} per "
                                 f"process, fewer than its {local} slots; lower data.batch_size")
            last_start = local * (shard // local - 1)  # training drops an epoch's short remainder
            if len(range(self.count - 1, num_records, self.count)) <= last_start:
                raise ValueError(f"{num_records} training questions over {self.count} processes x {local} slots "
                                 f"leave the last process no real question in an epoch's last batch; drop or add a "
                                 f"few questions or change data.batch_size")
        return local

    def _prompt_position(self, prompt: int, process: int) -> int:
        """Data position in the global batch of `process`'s local `prompt`."""
        return prompt * self.count + process

    def _episode_position(self, slot: int, process: int) -> int:
        """Global episode position of `process`'s local `slot` (a prompt's episodes are contiguous, as in one
        process)."""
        n = self.per_prompt
        return self._prompt_position(slot // n, process) * n + slot % n

    def slot_ids(self, num_slots: int) -> Optional[list[int]]:
        """Episode position (in the global batch) of each local slot; None with one process (slot = position)."""
        if not self.multi:
            return None
        return [self._episode_position(k, self.index) for k in range(num_slots)]

    def group_ids(self, num_prompts: int) -> np.ndarray:
        """[num_prompts * n] GRPO group id of each local episode: its prompt's data position in the global batch,
        so ids are unique over processes and below the global row count."""
        prompts = [self._prompt_position(i, self.index) if self.multi else i for i in range(num_prompts)]
        return np.repeat(np.asarray(prompts, np.int32), self.per_prompt)

    # ---- weights ----
    def decode_params(self, params):
        """Actor weights for this process's sampler (one process: `reshard_for_decode` on the training mesh)."""
        if not self.multi:
            from rr1_jax.rl.trainer import reshard_for_decode

            return reshard_for_decode(params, self.train_mesh)
        return local_copy(params, self.train_mesh, self.decode_mesh, DECODE_RULES)

    def local_params(self, params):
        """Weights this process can read whole (validation, HF export): unchanged with one process."""
        return params if not self.multi else local_copy(params, self.train_mesh, self.decode_mesh, DECODE_RULES)

    # ---- agreement ----
    def agree_max(self, value: int) -> int:
        return int(value) if not self.multi else int(self._gather(np.asarray(value, np.int64)).max())

    def any(self, flag: bool) -> bool:
        return bool(flag) if not self.multi else bool(self._gather(np.asarray(bool(flag))).any())

    def sum(self, value: float) -> float:
        return float(value) if not self.multi else float(self._gather(np.asarray(value, np.float64)).sum())

    def common_widths(self, traj, pad_id: int):
        """Trajectories padded to the widest prompt and response of any process (same shapes everywhere)."""
        if not self.multi:
            return traj
        p, r = (self.agree_max(w) for w in (traj.prompt_width, traj.response_width))
        return pad_trajectories(traj, p, r, pad_id)

    def cost_rewards(self, normalizer, costs: Sequence[float], num_slots: int):
        """What `score_episodes` calls per local episode: the normaliser itself with one process; else the
        cost rewards of this process's episodes after the normaliser has seen every process's episode costs in
        data order (so it evolves exactly as in one process with the whole batch)."""
        if not self.multi:
            return normalizer
        local = np.full((num_slots,), np.nan)
        local[:len(costs)] = costs
        everyone = self._gather(local)  # [P, slots]: row p, slot k = episode position _episode_position(k, p)
        rewards = np.full(everyone.shape, np.nan)
        in_data_order = sorted((self._episode_position(k, p), p, k)
                               for k in range(num_slots) for p in range(self.count))
        for _, p, k in in_data_order:
            if not np.isnan(everyone[p, k]):
                rewards[p, k] = normalizer(float(everyone[p, k]))
        mine = iter(rewards[self.index, :len(costs)].tolist())
        return lambda cost: next(mine)

    def mean_metrics(self, metrics: dict, count: int) -> dict:
        """Per-process means over `count` rows -> means over every process's rows (same keys)."""
        if not self.multi:
            return metrics
        keys = sorted(metrics)
        rows = self._gather(np.asarray([count] + [metrics[k] * count for k in keys], np.float64))  # [P, 1 + K]
        total = max(rows[:, 0].sum(), 1.0)
        return {k: float(rows[:, 1 + j].sum() / total) for j, k in enumerate(keys)}

    def data_state(self, saved: dict) -> dict:
        """A checkpoint's data-iterator state for this process: hosts advance in lock step, so process 0's saved
        position is every process's; only the process index differs."""
        return saved if not self.multi else {**saved, "process_index": self.index}
