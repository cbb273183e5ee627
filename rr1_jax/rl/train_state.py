"""The PPO train state: one pytree holding everything an exact resume needs on device.

Models enter as NNX modules and are split once (`graphdef, params = nnx.split(model, nnx.Param)`); the state
holds the params as plain nested dicts of arrays (`nnx.to_pure_dict`), so optax, jit shardings and orbax see
ordinary pytrees, and `nnx.merge(graphdef, params)` rebuilds a module inside a jitted function at trace time.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rr1_jax.parallel.mesh import TRAIN_RULES, ShardingRules, param_shardings
from rr1_jax.rl.kl import AdaptiveKLController, FixedKLController, make_kl_controller
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig

Params = dict  # nested dict of arrays (nnx.to_pure_dict of an nnx.Param state)
KLController = Union[FixedKLController, AdaptiveKLController]


@struct.dataclass
class TrainState:
    actor: Params  # policy weights (f32 master weights)
    critic: Optional[Params]  # value model weights; None for GRPO
    ref: Params  # reference policy (KL anchor); frozen unless ppo.ref_refresh_every > 0
    actor_opt: Any  # optax state of the actor optimizer
    critic_opt: Any  # optax state of the critic optimizer; None for GRPO
    step: jax.Array  # int32: PPO iterations completed
    actor_updates: jax.Array  # int32: iterations in which the actor was updated (drives its lr schedule)
    critic_updates: jax.Array  # int32: iterations in which the critic was updated
    rng: jax.Array  # PRNG key (mini-batch shuffling)
    kl_ctrl: KLController  # in-reward KL coefficient β (and its adaptive-controller state)


@dataclasses.dataclass(frozen=True)
class ModelDefs:
    """The static halves of the split modules (hashable; closed over by the jitted functions)."""

    actor: nnx.GraphDef
    critic: Optional[nnx.GraphDef]


def split_params(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, Params]:
    """(graphdef, Param state with logical-axis metadata, plain nested-dict params)."""
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, state, nnx.to_pure_dict(state)


def fresh_copy(params: Params, shardings: Params) -> Params:
    """New buffers with the given shardings: the state never aliases the modules' arrays, so donating the
    state to an update leaves the caller's modules (and the frozen reference) usable."""
    return jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=shardings)(params)


def freeze(names: tuple[str, ...]) -> optax.GradientTransformation:
    """Zeroes the updates of the top-level parameters in `names` (identity when empty)."""
    if not names:
        return optax.identity()
    return optax.masked(optax.set_to_zero(),
                        lambda params: {k: jax.tree.map(lambda _: k in names, v) for k, v in params.items()})


def gradient_transform(cfg: OptimConfig) -> optax.GradientTransformation:
    """Global-norm clip, then AdamW's direction including decoupled weight decay — learning rate NOT applied.

    The update is `params - lr · direction`, exactly optax.adamw (torch AdamW), with `lr` from
    `learning_rate()` so the schedule advances per PPO iteration, not per optimizer step (spec P6).
    Frozen parameters get no gradient in the clipping norm and no update (not even weight decay).
    """
    return optax.chain(freeze(cfg.frozen), optax.clip_by_global_norm(cfg.grad_clip),
                       optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                       optax.add_decayed_weights(cfg.weight_decay), freeze(cfg.frozen))


def learning_rate(cfg: OptimConfig, updates_done: jax.Array) -> jax.Array:
    """The lr of the next iteration's updates, after `updates_done` earlier ones (see OptimConfig)."""
    k = jnp.asarray(updates_done, jnp.float32)
    ramp = k if cfg.upstream_zero_first_lr else k + 1.0
    return cfg.lr * jnp.minimum(1.0, ramp / max(1, cfg.warmup_steps))


def apply_update(params: Params, direction: Params, lr: jax.Array) -> Params:
    return jax.tree.map(lambda p, d: (p - lr * d).astype(p.dtype), params, direction)


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def pure_shardings(state: nnx.State, mesh: Mesh, rules: ShardingRules = TRAIN_RULES) -> Params:
    """NamedSharding per parameter as a plain nested dict (matches `nnx.to_pure_dict(state)`)."""
    return nnx.to_pure_dict(param_shardings(state, rules, mesh))


def opt_state_shardings(tx: optax.GradientTransformation, params: Params, param_sharding: Params, mesh: Mesh):
    """Shardings of `tx.init(params)`: moment trees follow the params; counters are replicated."""
    abstract = jax.eval_shape(tx.init, params)
    return optax.tree_map_params(tx, lambda _, s: s, abstract, param_sharding,
                                 transform_non_params=lambda _: _replicated(mesh))


def init_optimizer(tx: optax.GradientTransformation, params: Params, param_sharding: Params, mesh: Mesh):
    """Optimizer state created inside a jit, born with its final shardings (no replicated host copy)."""
    shardings = opt_state_shardings(tx, params, param_sharding, mesh)
    return jax.jit(tx.init, out_shardings=shardings)(params), shardings


def build_train_state(actor: nnx.Module, critic: Optional[nnx.Module], ppo: PPOConfig, actor_optim: OptimConfig,
                      critic_optim: OptimConfig, mesh: Mesh, *, ref: Optional[nnx.Module] = None, seed: int = 0,
                      rules: ShardingRules = TRAIN_RULES):
    """(TrainState, its shardings, ModelDefs). The reference defaults to a frozen copy of the actor's weights."""
    actor_def, actor_state, actor_params = split_params(actor)
    actor_sharding = pure_shardings(actor_state, mesh, rules)
    actor_params = fresh_copy(actor_params, actor_sharding)
    ref_params = fresh_copy(actor_params if ref is None else split_params(ref)[2], actor_sharding)
    actor_opt, actor_opt_sharding = init_optimizer(gradient_transform(actor_optim), actor_params, actor_sharding,
                                                   mesh)
    critic_def = critic_params = critic_opt = critic_sharding = critic_opt_sharding = None
    if ppo.uses_critic:
        if critic is None:
            raise ValueError("ppo.adv_estimator='gae' needs a critic: build one with "
                             "rr1_jax.model.critic.critic_from_policy(policy)")
        critic_def, critic_state, critic_params = split_params(critic)
        critic_sharding = pure_shardings(critic_state, mesh, rules)
        critic_params = fresh_copy(critic_params, critic_sharding)
        critic_opt, critic_opt_sharding = init_optimizer(gradient_transform(critic_optim), critic_params,
                                                         critic_sharding, mesh)
    kl_ctrl = make_kl_controller(ppo.kl_ctrl, ppo.kl_coef, ppo.kl_target, ppo.kl_horizon)
    rep = _replicated(mesh)
    put = lambda x: jax.device_put(x, rep)  # noqa: E731
    state = TrainState(actor=actor_params, critic=critic_params, ref=ref_params, actor_opt=actor_opt,
                       critic_opt=critic_opt, step=put(jnp.int32(0)), actor_updates=put(jnp.int32(0)),
                       critic_updates=put(jnp.int32(0)), rng=put(jax.random.key_data(jax.random.key(seed))),
                       kl_ctrl=jax.tree.map(put, kl_ctrl))
    shardings = TrainState(actor=actor_sharding, critic=critic_sharding, ref=actor_sharding,
                           actor_opt=actor_opt_sharding, critic_opt=critic_opt_sharding, step=rep,
                           actor_updates=rep, critic_updates=rep, rng=rep, kl_ctrl=jax.tree.map(lambda _: rep, kl_ctrl))
    return state, shardings, ModelDefs(actor_def, critic_def)


def abstract_train_state(state: TrainState, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying target shardings: the restore target for a checkpoint on any mesh."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
