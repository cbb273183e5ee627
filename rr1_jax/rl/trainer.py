"""Host side of PPO: builds the sharded, donated, jitted update functions once and runs one iteration per rollout.

    trainer = PPOTrainer(actor, critic, ppo_cfg, actor_optim, critic_optim, mesh)
    state = trainer.init_state()                           # TrainState (see train_state.py)
    state, metrics = trainer.ppo_iteration(state, traj, scores, group_ids)   # after each rollout
    decode_params = reshard_for_decode(trainer.actor_state(state), mesh)    # hand the weights to the sampler

Every function is compiled on first use and never again for the same shapes (static batch and widths).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rr1_jax.parallel.mesh import DECODE_RULES, TRAIN_RULES, ShardingRules, batch_sharding, make_mesh, param_shardings
from rr1_jax.parallel.multihost import allgather
from rr1_jax.rl.logprobs import map_rows, token_logprobs, token_values, value_mask
from rr1_jax.rl.packed_updates import fill_fraction, plan_packing
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig
from rr1_jax.rl.train_state import TrainState, abstract_train_state, build_train_state
from rr1_jax.rl.updates import actor_update, critic_update, prepare_batch
from rr1_jax.rollout.trajectory import Trajectories


class PPOTrainer:
    """Owns the model definitions, shardings and jitted functions; the TrainState itself is passed around."""

    def __init__(self, actor: nnx.Module, critic: Optional[nnx.Module], ppo: PPOConfig,
                 actor_optim: OptimConfig = OptimConfig(lr=1e-6), critic_optim: OptimConfig = OptimConfig(lr=1e-5),
                 mesh: Optional[Mesh] = None, *, ref: Optional[nnx.Module] = None, seed: int = 0,
                 num_groups: Optional[int] = None, rules: ShardingRules = TRAIN_RULES):
        self.cfg, self.actor_optim, self.critic_optim = ppo, actor_optim, critic_optim
        self.mesh = mesh if mesh is not None else make_mesh(devices=jax.devices()[:1])
        self.rules = rules
        with jax.set_mesh(self.mesh):
            self._initial, self.shardings, self.defs = build_train_state(
                actor, critic, ppo, actor_optim, critic_optim, self.mesh, ref=ref, seed=seed, rules=rules)
        self._copy_state = jax.jit(lambda s: jax.tree.map(jnp.copy, s), out_shardings=self.shardings)
        self._abstract = abstract_train_state(self._initial, self.shardings)
        # shapes + logical-axis metadata only (no reference to the module's arrays), for actor_state()
        self._actor_template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                            nnx.split(actor, nnx.Param)[1])
        self.batch_shards = int(np.prod([self.mesh.shape[a] for a in ("data", "fsdp")]))
        # processes holding this mesh's devices; > 1: ppo_iteration takes each process's own rows (multi-host)
        self.processes = len({d.process_index for d in self.mesh.devices.flat})
        self._replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        defs = self.defs
        self.seed = seed
        # packed rows split over the data axes like padded rows (a plan rounds its row count to a multiple)
        packed_rows = rules.spec((None, None, None, "batch", None))
        self._prepare = jax.jit(functools.partial(prepare_batch, defs=defs, cfg=ppo, num_groups=num_groups,
                                                  packed_rows=packed_rows))
        self._critic_update = jax.jit(
            functools.partial(critic_update, defs=defs, cfg=ppo, optim=critic_optim, packed_rows=packed_rows),
            donate_argnums=0, out_shardings=(self.shardings, None))
        self._actor_update = jax.jit(
            functools.partial(actor_update, defs=defs, cfg=ppo, optim=actor_optim, packed_rows=packed_rows),
            donate_argnums=0, out_shardings=(self.shardings, None))
        self._logprobs = jax.jit(functools.partial(_trajectory_logprobs, graphdef=defs.actor, cfg=ppo),
                                 static_argnames=("with_entropy",))
        self._values = jax.jit(functools.partial(_trajectory_values, graphdef=defs.critic, cfg=ppo))
        self._refresh_ref = jax.jit(lambda s: s.replace(ref=jax.tree.map(jnp.copy, s.actor)),
                                    donate_argnums=0, out_shardings=self.shardings)

    # -------------------------------------------------------------------------------------------- pieces
    def init_state(self, copy: bool = True) -> TrainState:
        """The initial TrainState. Updates donate their input, so by default each call returns a fresh copy;
        `copy=False` hands over the trainer's own initial state and drops it (no second copy in memory —
        what a long training run wants), after which init_state() can no longer be called."""
        if self._initial is None:
            raise RuntimeError("init_state(copy=False) already handed the initial state over; restore a "
                               "checkpoint or build a new PPOTrainer")
        if not copy:
            state, self._initial = self._initial, None
            return state
        with jax.set_mesh(self.mesh):
            return self._copy_state(self._initial)

    def shard_batch(self, tree):
        """Place a host batch (Trajectories, scores, ...) with rows split over the data axes of the mesh.

        On a mesh spanning several processes each process passes only ITS rows (the same number everywhere);
        the global batch is their concatenation in process order (`jax.make_array_from_process_local_data`).
        """
        def put(x):
            x = np.asarray(x)
            if self.processes > 1:
                if not x.ndim or (x.shape[0] * self.processes) % self.batch_shards:
                    raise ValueError(f"a process-local batch of shape {x.shape} cannot be split over the "
                                     f"{self.batch_shards} data shards of a {self.processes}-process mesh; make the "
                                     f"global batch a multiple of mesh.data * mesh.fsdp")
                sharding = batch_sharding(self.mesh, x.ndim, self.rules)
                return jax.make_array_from_process_local_data(sharding, x, (x.shape[0] * self.processes,) + x.shape[1:])
            if x.ndim and x.shape[0] % self.batch_shards == 0:
                return jax.device_put(x, batch_sharding(self.mesh, x.ndim, self.rules))
            return jax.device_put(x, jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec()))
        return jax.tree.map(put, tree)

    def compute_logprobs(self, params, traj: Trajectories, with_entropy: bool = False):
        """Log-probs (and entropies) [N, R] of the response tokens under actor-shaped `params` (old or ref)."""
        with jax.set_mesh(self.mesh):
            return self._logprobs(params, self.shard_batch(traj), with_entropy=with_entropy)

    def compute_values(self, critic_params, traj: Trajectories):
        """Critic values [N, R] (× value mask) of the response positions."""
        with jax.set_mesh(self.mesh):
            return self._values(critic_params, self.shard_batch(traj))

    def abstract_state(self) -> TrainState:
        """Shape/dtype/sharding description of the state on this trainer's mesh (checkpoint restore target)."""
        return self._abstract

    def actor_state(self, state: TrainState) -> nnx.State:
        """The actor's params as an nnx.State (with logical-axis metadata), e.g. for the sampler or HF export."""
        template = jax.tree.map(lambda v: v, self._actor_template)  # a new State object to fill in
        nnx.replace_by_pure_dict(template, state.actor)
        return template

    def actor_module(self, state: TrainState) -> nnx.Module:
        return nnx.merge(self.defs.actor, self.actor_state(state))

    # -------------------------------------------------------------------------------------------- iteration
    def _check_batch(self, traj: Trajectories) -> None:
        n, cfg = traj.tokens.shape[0] * self.processes, self.cfg  # global rows
        if n % cfg.mini_batch_size:
            raise ValueError(f"trajectory batch of {n} rows is not a multiple of ppo.mini_batch_size="
                             f"{cfg.mini_batch_size}; pad the batch (build_trajectories(num_rows=...)) or change it")
        if traj.prompt_width < 1:
            raise ValueError("trajectories need prompt_width >= 1 (the first response token is predicted from "
                             "the last prompt position)")

    def ppo_iteration(self, state: TrainState, traj: Trajectories, scores, group_ids=None):
        """The whole update after a rollout: prepare → critic update → actor update (after critic warmup), then
        the reference refresh when `ppo.ref_refresh_every` says so.

        `state` is donated (do not reuse it). Returns (new state, flat dict of float metrics). On a mesh spanning
        several processes, `traj` and `scores` are this process's rows (see `shard_batch`).
        """
        self._check_batch(traj)
        iteration = int(jax.device_get(state.step))  # host decision below is the same on every process
        host_plan, prepare_plan = self._pack_plans(traj, iteration)
        with jax.set_mesh(self.mesh):
            traj, scores = self.shard_batch(traj), self.shard_batch(jnp.asarray(scores, jnp.float32))
            if group_ids is not None:
                group_ids = self.shard_batch(jnp.asarray(group_ids, jnp.int32))
            plan = None if host_plan is None else self._replicate(host_plan)
            prepare_plan = None if prepare_plan is None else self._replicate(prepare_plan)
            batch, (step, rng, kl_ctrl), metrics = self._prepare(state, traj, scores, group_ids, prepare_plan)
            state = state.replace(step=step, rng=rng, kl_ctrl=kl_ctrl)
            if self.cfg.uses_critic:
                state, critic_metrics = self._critic_update(state, batch, plan)
                metrics.update(critic_metrics)
            if iteration >= self.cfg.critic_warmup:
                state, actor_metrics = self._actor_update(state, batch, plan)
                metrics.update(actor_metrics)
            refresh = self.cfg.ref_refresh_every
            if refresh and (iteration + 1) % refresh == 0:
                state = self._refresh_ref(state)  # the KL anchor moves to the policy just trained
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        metrics["actor/updated"] = float(iteration >= self.cfg.critic_warmup)
        if host_plan is not None:
            metrics["perf/packed_fill"] = fill_fraction(host_plan)
        return state, metrics

    def _pack_plans(self, traj: Trajectories, iteration: int):
        """Packed layouts on the host, (the updates' mini-batches, the whole batch for the forwards before
        them); (None, None) unless `ppo.pack_updates`.

        Every process plans the global batch (its rows gathered in process order), so all hold the same plan.
        With `ppo.shuffle` each epoch's row order is drawn here from (seed, iteration): a resumed run draws the
        same orders (they differ from the padded update's device-side permutation).
        """
        cfg = self.cfg
        if not cfg.pack_updates:
            return None, None
        attention, valid = np.asarray(traj.attention_mask), np.asarray(traj.row_valid)
        if self.processes > 1:
            attention = allgather(attention).reshape((-1,) + attention.shape[1:])
            valid = allgather(valid).reshape(-1)
        orders = None
        if cfg.shuffle:
            rng = np.random.default_rng([self.seed, iteration])
            orders = [rng.permutation(attention.shape[0]) for _ in range(cfg.ppo_epochs)]
        multiple = math.lcm(2, self.batch_shards)
        return (plan_packing(attention, valid, cfg.mini_batch_size, cfg.micro_batch_size, orders, multiple),
                plan_packing(attention, valid, attention.shape[0], cfg.micro_batch_size, None, multiple))

    def _replicate(self, tree):
        """A host pytree as arrays replicated over the mesh (every process passes the same values)."""
        return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, self._replicated, lambda i: x[i]), tree)


def _trajectory_logprobs(params, traj: Trajectories, *, graphdef, cfg: PPOConfig, with_entropy: bool = False):
    fn = functools.partial(token_logprobs, graphdef, params, prompt_width=traj.prompt_width,
                           temperature=cfg.temperature, chunk_size=cfg.logprob_chunk, with_entropy=with_entropy)
    out = map_rows(lambda t, pos, m: fn(t, pos, m), (traj.tokens, traj.positions, traj.attention_mask),
                   cfg.micro_batch_size)
    return out if with_entropy else out[0]


def _trajectory_values(params, traj: Trajectories, *, graphdef, cfg: PPOConfig):
    p = traj.prompt_width
    values = map_rows(lambda t, pos, m: token_values(graphdef, params, t, pos, m, p),
                      (traj.tokens, traj.positions, traj.attention_mask), cfg.micro_batch_size)
    return values * value_mask(traj.attention_mask, p)


@functools.lru_cache(maxsize=16)
def _decode_resharder(treedef, shardings: tuple):
    return jax.jit(lambda leaves: leaves, out_shardings=list(shardings))


def reshard_for_decode(params: nnx.State, mesh: Mesh, rules: ShardingRules = DECODE_RULES) -> nnx.State:
    """Train → decode sharding of the actor weights: one cached jitted identity with decode out_shardings.

    Same devices, no host round trip; the training copy stays valid (not donated).
    """
    shardings = param_shardings(params, rules, mesh)
    leaves, treedef = jax.tree.flatten(params)
    sharding_leaves = tuple(jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding)))
    with jax.set_mesh(mesh):
        out = _decode_resharder(treedef, sharding_leaves)(leaves)
    return jax.tree.unflatten(treedef, out)
