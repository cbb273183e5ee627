"""The pure functions of one PPO iteration after the rollout (purejaxrl style: `f(state, batch) -> (state, m)`).

Upstream order (spec §3): old log-probs → ref log-probs → values → token rewards (+ in-reward KL) → advantages
(`prepare_batch`), then `critic_update`, then `actor_update`. Each update makes `ppo_epochs` passes over
mini-batches (`lax.scan` over a (optionally) permuted batch); a mini-batch's gradient is accumulated over
micro-batches as exact (sum, count) pairs — a token-mean over the whole mini-batch, whatever the micro split.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import PartitionSpec

from rr1_jax.rl import algos
from rr1_jax.rl.logprobs import map_rows, token_logprobs, token_values, value_mask
from rr1_jax.rl.packed_updates import (PackedPPOBatch, PackPlan, pack_inputs, pack_minibatches, packed_logprobs,
                                      packed_values, to_rows)
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig
from rr1_jax.rl.train_state import ModelDefs, TrainState, apply_update, gradient_transform, learning_rate
from rr1_jax.rollout.trajectory import Trajectories

Array = jax.Array


@struct.dataclass
class PPOBatch:
    """Everything the critic and actor updates read, row-aligned. R = response width."""

    tokens: Array  # [N, P+R] int32
    attention_mask: Array  # [N, P+R] bool
    positions: Array  # [N, P+R] int32
    policy_mask: Array  # [N, R] tokens of the policy loss / entropy / KL loss
    value_mask: Array  # [N, R] tokens of the value loss (attention mask shifted by one)
    old_logp: Array  # [N, R] π_old log-probs
    ref_logp: Array  # [N, R] reference log-probs
    values: Array  # [N, R] critic values at rollout (× value_mask); zeros for GRPO
    advantages: Array  # [N, R]
    returns: Array  # [N, R]
    prompt_width: int = struct.field(pytree_node=False)


# ------------------------------------------------------------------------------------------------ prepare

def prepare_batch(state: TrainState, traj: Trajectories, scores: Array, group_ids: Optional[Array],
                  plan: Optional[PackPlan] = None, *, defs: ModelDefs, cfg: PPOConfig,
                  num_groups: Optional[int] = None, packed_rows: Optional[PartitionSpec] = None):
    """Steps 3-10 of upstream's iteration. Returns (PPOBatch, (step, rng, kl_ctrl) after it, metrics).

    scores: [N] sequence scores (dummy rows ignored); group_ids: [N] dense prompt ids (GRPO only); `plan`: the
    whole batch as one packed mini-batch ([1, 1, G, M, W]): the forwards run on packed rows, G chunks of M.
    """
    p = traj.prompt_width
    valid = traj.row_valid.astype(bool)  # [N]
    response_mask = traj.response_mask & valid[:, None]  # [N, R]
    policy_mask = (traj.loss_mask if cfg.state_masking else traj.response_mask) & valid[:, None]
    vmask = value_mask(traj.attention_mask, p) & valid[:, None]  # [N, R]
    rows = (traj.tokens, traj.positions, traj.attention_mask)
    packed = None if plan is None else _constrain(pack_inputs(traj.tokens, traj.positions, p, plan), packed_rows)

    def per_token(padded_fn, packed_fn):  # [N, R] from the padded rows, or from the packed ones scattered back
        if packed is None:
            return map_rows(padded_fn, rows, cfg.micro_batch_size)
        chunks = jax.tree.map(lambda x: x[0, 0], packed)  # [G, M, W]
        return to_rows(packed, jax.lax.map(packed_fn, chunks)[None, None], response_mask.shape)

    def logprobs_of(params):
        return per_token(
            lambda t, pos, m: token_logprobs(defs.actor, params, t, pos, m, p, temperature=cfg.temperature,
                                             chunk_size=cfg.logprob_chunk)[0],
            lambda micro: packed_logprobs(defs.actor, params, micro, temperature=cfg.temperature,
                                          chunk_size=cfg.logprob_chunk)[0])

    old_logp = logprobs_of(state.actor) if cfg.recompute_old_logprobs else traj.old_logprobs
    old_logp = jnp.where(policy_mask, old_logp, 0.0)
    ref_logp = jnp.where(policy_mask, logprobs_of(state.ref), 0.0)
    if cfg.uses_critic:
        values = per_token(lambda t, pos, m: token_values(defs.critic, state.critic, t, pos, m, p),
                           lambda micro: packed_values(defs.critic, state.critic, micro)) * vmask
    else:
        values = jnp.zeros(response_mask.shape, jnp.float32)

    scores = jnp.where(valid, scores.astype(jnp.float32), 0.0)  # [N]
    beta = state.kl_ctrl.value
    shaped_coef = 0.0 if cfg.kl_in_loss else beta
    rewards, kl_info = algos.token_rewards(scores, response_mask, old_logp=old_logp, ref_logp=ref_logp,
                                           policy_mask=policy_mask, kl_coef=shaped_coef, kl_kind=cfg.kl_penalty)
    kl_ctrl = state.kl_ctrl
    if not cfg.kl_in_loss:  # β used above is the pre-update value (spec P10)
        kl_ctrl = kl_ctrl.update(kl_info["kl"], jnp.sum(valid).astype(jnp.float32))

    if cfg.adv_estimator == "gae":
        advantages, returns = algos.gae_advantages(rewards, values, response_mask, cfg.gamma, cfg.lam,
                                                   bridge_observations=cfg.bridge_observations,
                                                   policy_mask=policy_mask)
    else:
        if group_ids is None:
            raise ValueError("ppo.adv_estimator='grpo' needs group_ids (one dense id per prompt)")
        groups = group_ids.shape[0] if num_groups is None else num_groups
        ids = jnp.where(valid, group_ids, groups)  # dummy rows fall outside every group
        advantages, returns = algos.grpo_advantages(rewards, response_mask, ids, groups,
                                                    norm_by_std=cfg.grpo_norm_by_std)

    batch = PPOBatch(traj.tokens, traj.attention_mask, traj.positions, policy_mask, vmask, old_logp, ref_logp,
                     values, advantages, returns, p)
    rng, _ = jax.random.split(jax.random.wrap_key_data(state.rng))
    response_lengths = jnp.sum(response_mask, axis=-1).astype(jnp.float32)
    n_valid = jnp.maximum(jnp.sum(valid), 1)
    metrics = {
        "critic/score_mean": jnp.sum(scores) / n_valid,
        "critic/rewards_mean": jnp.sum(jnp.sum(rewards * response_mask, -1)) / n_valid,
        "critic/advantages_mean": algos.masked_mean(advantages, response_mask),
        "critic/returns_mean": algos.masked_mean(returns, response_mask),
        "critic/values_mean": algos.masked_mean(values, vmask),
        "critic/kl": kl_info["kl"],
        "critic/kl_coef": beta,
        "response_length/mean": jnp.sum(response_lengths) / n_valid,
        "response_length/policy_tokens_mean": jnp.sum(policy_mask) / n_valid,
    }
    return batch, (state.step + 1, jax.random.key_data(rng), kl_ctrl), metrics


def _constrain(tree, spec: Optional[PartitionSpec]):
    """Packed rows [E, K, G, M, W] split over the data axes by `spec` (no constraint without one)."""
    return tree if spec is None else jax.lax.with_sharding_constraint(tree, spec)


# ------------------------------------------------------------------------------------------------ mini-batching

def accumulate_gradients(loss_sums: Callable, params, micro_batches):
    """Exact token-mean gradient over micro-batches: Σ∇(loss sums) / Σ counts.

    `loss_sums(params, micro) -> (loss_sum, aux)` where aux holds a "count" and further *sums*; micro_batches
    has a leading micro-batch axis. Returns (gradient of the token mean, aux sums over all micro-batches).
    """
    grad_fn = jax.grad(loss_sums, has_aux=True)

    def body(acc, micro):
        grads, aux = grad_fn(params, micro)
        return jax.tree.map(jnp.add, acc, (grads, aux)), None

    first = jax.tree.map(lambda x: x[0], micro_batches)
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, first))
    (grads, aux), _ = jax.lax.scan(body, zeros, micro_batches)
    count = jnp.maximum(aux["count"], 1.0)
    return jax.tree.map(lambda g: g / count, grads), aux


def _split_rows(batch: PPOBatch, order: Array, num_minibatches: int, micro: int):
    """Batch arrays reordered by `order` [N] and reshaped to [K mini-batches, G micro-batches, micro, ...]."""
    def split(x):
        x = jnp.asarray(x)[order]
        return x.reshape((num_minibatches, -1, micro) + x.shape[1:])
    return jax.tree.map(split, batch)


def run_epochs(params, opt_state, batch: PPOBatch, rng: Array, loss_sums: Callable, optim: OptimConfig,
               lr: Array, cfg: PPOConfig, plan: Optional[PackPlan] = None, packed_rows: Optional[PartitionSpec] = None):
    """`ppo_epochs` passes of mini-batch AdamW steps. Returns (params, opt_state, per-step metrics means).

    With a `plan` the mini-batches are packed once (`packed_updates`; the plan's epoch layouts replace the device
    shuffle), their packed rows sharded by `packed_rows` (a spec of the [E, K, G, M, W] arrays) when given.
    """
    n = batch.tokens.shape[0]
    if n % cfg.mini_batch_size:
        raise ValueError(f"batch of {n} rows is not a multiple of ppo.mini_batch_size={cfg.mini_batch_size}")
    num_minibatches = n // cfg.mini_batch_size
    tx = gradient_transform(optim)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, aux = accumulate_gradients(loss_sums, params, minibatch)
        grad_norm = optax.tree.norm(grads)
        direction, new_opt_state = tx.update(grads, opt_state, params)
        new_params = apply_update(params, direction, lr)
        # A mini-batch of padding rows only (a short last batch) has a zero gradient, but AdamW would still step
        # along its momentum and decay the weights: skip it, and leave it out of the metrics' means.
        has_tokens = aux["count"] > 0
        keep_if_empty = functools.partial(jax.tree.map, lambda new, old: jnp.where(has_tokens, new, old))
        params, opt_state = keep_if_empty(new_params, params), keep_if_empty(new_opt_state, opt_state)
        count = jnp.maximum(aux["count"], 1.0)
        step_metrics = {k: v / count for k, v in aux.items() if k != "count"}
        step_metrics["grad_norm"] = grad_norm
        return (params, opt_state), (step_metrics, has_tokens)

    packed = None if plan is None else _constrain(pack_minibatches(batch, plan), packed_rows)  # [E, K, G, M, W]

    def epoch(carry, xs):
        epoch_rng, index = xs
        if packed is not None:
            layout = jax.tree.map(lambda x: x[jnp.minimum(index, x.shape[0] - 1)], packed)
            return jax.lax.scan(minibatch_step, carry, layout)
        order = jax.random.permutation(epoch_rng, n) if cfg.shuffle else jnp.arange(n)
        minibatches = _split_rows(batch, order, num_minibatches, cfg.micro_batch_size)
        return jax.lax.scan(minibatch_step, carry, minibatches)

    epoch_rngs = jax.random.split(jax.random.wrap_key_data(rng), cfg.ppo_epochs)
    (params, opt_state), (metrics, has_tokens) = jax.lax.scan(epoch, (params, opt_state),
                                                              (epoch_rngs, jnp.arange(cfg.ppo_epochs)))
    steps = jnp.maximum(has_tokens.sum(), 1)  # the mini-batch steps that were taken
    return params, opt_state, jax.tree.map(lambda m: jnp.where(has_tokens, m, 0.0).sum() / steps, metrics)


# ------------------------------------------------------------------------------------------------ losses as sums

def actor_loss_sums(params, micro: PPOBatch, *, defs: ModelDefs, cfg: PPOConfig, kl_coef: float):
    """Σ over policy tokens of (pg − c_ent·entropy + c_kl·kl); aux: the sums behind every actor metric."""
    with_entropy = cfg.entropy_coeff != 0.0
    if isinstance(micro, PackedPPOBatch):
        logp, entropy = packed_logprobs(defs.actor, params, micro, temperature=cfg.temperature,
                                        chunk_size=cfg.logprob_chunk, with_entropy=True)
    else:
        logp, entropy = token_logprobs(defs.actor, params, micro.tokens, micro.positions, micro.attention_mask,
                                       micro.prompt_width, temperature=cfg.temperature,
                                       chunk_size=cfg.logprob_chunk, with_entropy=True)
    mask = micro.policy_mask
    _, pg = algos.policy_loss(logp, micro.old_logp, micro.advantages, mask, cfg.clip_ratio)
    count = pg["count"]
    entropy_sum = algos.masked_sum(jax.lax.stop_gradient(entropy) if not with_entropy else entropy, mask)
    total = pg["loss_sum"] - cfg.entropy_coeff * entropy_sum
    aux = {"count": count, "pg_loss": pg["loss_sum"], "entropy": entropy_sum,
           "pg_clipfrac": pg["clipfrac"] * count, "ppo_kl": pg["approx_kl"] * count}
    if cfg.kl_in_loss:
        _, kl = algos.kl_loss(logp, micro.ref_logp, mask, cfg.kl_loss_type)
        total = total + kl_coef * kl["loss_sum"]
        aux["kl_loss"] = kl["loss_sum"]
    return total, aux


def critic_loss_sums(params, micro: PPOBatch, *, defs: ModelDefs, cfg: PPOConfig):
    """Σ over value-mask tokens of the clipped value loss; aux: sums behind the critic metrics."""
    if isinstance(micro, PackedPPOBatch):
        predicted = packed_values(defs.critic, params, micro)
    else:
        predicted = token_values(defs.critic, params, micro.tokens, micro.positions, micro.attention_mask,
                                 micro.prompt_width)
    _, vf = algos.value_loss(predicted, micro.values, micro.returns, micro.value_mask, cfg.cliprange_value)
    count = vf["count"]
    return vf["loss_sum"], {"count": count, "vf_loss": vf["loss_sum"], "vf_clipfrac": vf["clipfrac"] * count,
                            "vpred_mean": algos.masked_sum(predicted, micro.value_mask)}


# ------------------------------------------------------------------------------------------------ updates

def critic_update(state: TrainState, batch: PPOBatch, plan: Optional[PackPlan] = None, *, defs: ModelDefs,
                  cfg: PPOConfig, optim: OptimConfig, packed_rows: Optional[PartitionSpec] = None):
    """Step 11: the critic's mini-batch passes on the pre-update batch (packed by `plan` if given).
    Returns (state, metrics)."""
    lr = learning_rate(optim, state.critic_updates)
    loss = functools.partial(critic_loss_sums, defs=defs, cfg=cfg)
    rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state.rng), 1))
    params, opt_state, m = run_epochs(state.critic, state.critic_opt, batch, rng, loss, optim, lr, cfg, plan,
                                      packed_rows)
    state = state.replace(critic=params, critic_opt=opt_state, critic_updates=state.critic_updates + 1)
    return state, {**{f"critic/{k}": v for k, v in m.items()}, "critic/lr": lr}


def actor_update(state: TrainState, batch: PPOBatch, plan: Optional[PackPlan] = None, *, defs: ModelDefs,
                 cfg: PPOConfig, optim: OptimConfig, packed_rows: Optional[PartitionSpec] = None):
    """Step 12: the actor's mini-batch passes (PPO clip + entropy bonus [+ KL loss]), packed by `plan` if given.
    Returns (state, metrics)."""
    lr = learning_rate(optim, state.actor_updates)
    loss = functools.partial(actor_loss_sums, defs=defs, cfg=cfg, kl_coef=cfg.kl_loss_coef)
    rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state.rng), 2))
    params, opt_state, m = run_epochs(state.actor, state.actor_opt, batch, rng, loss, optim, lr, cfg, plan,
                                      packed_rows)
    state = state.replace(actor=params, actor_opt=opt_state, actor_updates=state.actor_updates + 1)
    return state, {**{f"actor/{k}": v for k, v in m.items()}, "actor/lr": lr}
