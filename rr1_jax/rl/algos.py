"""PPO/GRPO math as pure, jit-friendly JAX functions over ``[N, R]`` response-aligned arrays with masks.

Semantics follow verl 0.1 as used by Router-R1 (spec/ppo-semantics.md). Three masks, never interchangeable:
  response_mask  [N, R]  every non-pad response token, observation tokens included (reward index, GAE whitening,
                          GRPO broadcast);
  policy_mask    [N, R]  policy-generated tokens only (= upstream ``loss_mask``/``info_mask``: policy loss, entropy,
                          KL shaping and KL loss);
  value_mask     [N, R]  the critic's mask (upstream: the attention mask shifted right by one).
Losses return ``(loss, aux)`` where ``aux`` carries ``loss_sum`` and ``count`` so that minibatch accumulation is exact.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rr1_jax.rl.kl import KL_KINDS, AdaptiveKLController, FixedKLController, kl_estimate, make_kl_controller

__all__ = [
    "KL_KINDS", "AdaptiveKLController", "FixedKLController", "kl_estimate", "make_kl_controller",   # from kl.py
    "masked_sum", "masked_mean", "masked_var", "masked_whiten", "last_token_index", "token_rewards",
    "gae_advantages", "grpo_advantages", "dense_group_ids", "entropy_from_logits", "policy_loss", "value_loss",
    "kl_loss",
]

WHITEN_EPS = 1e-8
GRPO_EPS = 1e-6


# ----------------------------------------------------------------------------------------------- masked reductions

def masked_sum(x: jnp.ndarray, mask: jnp.ndarray, axis=None) -> jnp.ndarray:
    """Σ x·mask over ``axis`` (all axes by default)."""
    return jnp.sum(x * mask.astype(x.dtype), axis=axis)


def masked_mean(x: jnp.ndarray, mask: jnp.ndarray, axis=None) -> jnp.ndarray:
    """Σ x·mask / Σ mask; 0 where the mask is empty (upstream would give NaN)."""
    count = jnp.sum(mask.astype(x.dtype), axis=axis)
    return masked_sum(x, mask, axis) / jnp.maximum(count, 1.0)


def masked_var(x: jnp.ndarray, mask: jnp.ndarray, unbiased: bool = True) -> jnp.ndarray:
    """Variance of the masked entries of ``x`` (all axes); unbiased (Bessel) by default, as verl."""
    mean = masked_mean(x, mask)
    var = masked_mean(jnp.square(x - mean), mask)
    if unbiased:
        count = jnp.sum(mask.astype(x.dtype))
        var = var * count / jnp.maximum(count - 1.0, 1.0)  # upstream raises when count <= 1; jit cannot
    return var


def masked_whiten(x: jnp.ndarray, mask: jnp.ndarray, shift_mean: bool = True, eps: float = WHITEN_EPS) -> jnp.ndarray:
    """(x - μ)·rsqrt(σ² + eps) with μ, σ² (unbiased) over the masked entries of the WHOLE array.

    Masked-out positions are transformed too (not zeroed), as verl does.
    """
    mean = masked_mean(x, mask)
    whitened = (x - mean) * jax.lax.rsqrt(masked_var(x, mask) + eps)
    return whitened if shift_mean else whitened + mean


# ----------------------------------------------------------------------------------------------- rewards

def last_token_index(response_mask: jnp.ndarray) -> jnp.ndarray:
    """[N] index of each row's last non-pad response token (= L_i - 1 for compacted rows).

    A row with no response token gets index R - 1, as upstream's ``reward[i, -1]``.
    """
    width = response_mask.shape[-1]
    reversed_first = jnp.argmax(response_mask[:, ::-1] > 0, axis=-1)   # [N]
    return width - 1 - reversed_first


def token_rewards(scores: jnp.ndarray, response_mask: jnp.ndarray, *, old_logp: jnp.ndarray | None = None,
                  ref_logp: jnp.ndarray | None = None, policy_mask: jnp.ndarray | None = None,
                  kl_coef: float | jnp.ndarray = 0.0, kl_kind: str = "kl") -> tuple[jnp.ndarray, dict]:
    """Token-level rewards ``[N, R]``: each scalar score at its row's last response token, minus β·KL shaping.

    The score index counts observation tokens (``response_mask``); the KL penalty ``β·kl(old_logp, ref_logp)``
    applies to policy tokens only (``policy_mask``), as upstream's ``apply_kl_penalty``. Returns
    ``(rewards, {"kl": batch KL metric for the controller, "kl_coef": β})``; the metric is the mean over rows of
    each row's policy-token mean (rows without policy tokens are left out, where upstream would give NaN).
    """
    dtype = jnp.result_type(scores.dtype, jnp.float32)
    width = response_mask.shape[-1]
    placed = jax.nn.one_hot(last_token_index(response_mask), width, dtype=dtype)   # [N, R]
    rewards = scores.astype(dtype)[:, None] * placed                               # [N, R]
    if old_logp is None and ref_logp is None:
        return rewards, {"kl": jnp.zeros((), dtype), "kl_coef": jnp.asarray(kl_coef, dtype)}
    if old_logp is None or ref_logp is None or policy_mask is None:
        raise ValueError("KL shaping needs old_logp, ref_logp and policy_mask together")
    mask = policy_mask.astype(dtype)                                               # [N, R]
    kld = kl_estimate(old_logp, ref_logp, kl_kind).astype(dtype) * mask            # [N, R]
    rewards = rewards - kl_coef * kld
    row_tokens = jnp.sum(mask, axis=-1)                                            # [N]
    row_kl = jnp.sum(kld, axis=-1) / jnp.maximum(row_tokens, 1.0)                  # [N]
    current_kl = masked_mean(row_kl, row_tokens > 0)
    return rewards, {"kl": current_kl, "kl_coef": jnp.asarray(kl_coef, dtype)}


# ----------------------------------------------------------------------------------------------- advantages

def gae_advantages(rewards: jnp.ndarray, values: jnp.ndarray, response_mask: jnp.ndarray, gamma: float = 1.0,
                   lam: float = 1.0, *, bridge_observations: bool = False, policy_mask: jnp.ndarray | None = None,
                   whiten: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    """GAE with verl semantics: ``(advantages [N, R], returns [N, R])``.

    Default (upstream): a reverse scan over ALL R positions with no mask in the recursion
    (δ_t = r_t + γV_{t+1} - V_t, V_R = 0; A_t = δ_t + γλA_{t+1}), returns = A + V before whitening, then A is
    whitened over ``response_mask`` for the whole batch (unbiased variance, eps inside rsqrt).

    ``bridge_observations=True`` (multi-turn variant, later verl): positions outside ``policy_mask`` (observations,
    pads) are skipped by the recursion — they carry the running advantage and the next value through unchanged,
    so a policy token's advantage bootstraps from the next *policy* token. Rewards placed on non-policy tokens are
    then ignored. Whitening still uses ``response_mask``; on rows with no observation tokens and zero values/rewards
    past the end, both modes agree.
    """
    dtype = jnp.result_type(rewards.dtype, values.dtype, jnp.float32)
    rewards, values = rewards.astype(dtype), values.astype(dtype)
    if bridge_observations:
        if policy_mask is None:
            raise ValueError("gae_advantages(bridge_observations=True) needs policy_mask (policy tokens only)")
        steps = policy_mask > 0                                                    # [N, R]
    else:
        steps = jnp.ones(rewards.shape, dtype=bool)                                # [N, R]

    def backward_step(carry, xs):
        next_adv, next_value = carry                                               # [N], [N]
        reward, value, is_step = xs                                                # [N] each
        delta = reward + gamma * next_value - value
        adv = delta + gamma * lam * next_adv
        adv = jnp.where(is_step, adv, next_adv)
        next_value = jnp.where(is_step, value, next_value)
        return (adv, next_value), adv

    zeros = jnp.zeros(rewards.shape[:1], dtype)                                    # [N]
    _, adv_t = jax.lax.scan(backward_step, (zeros, zeros), (rewards.T, values.T, steps.T), reverse=True)
    advantages = adv_t.T                                                           # [N, R]
    returns = advantages + values                                                  # [N, R]
    if whiten:
        advantages = masked_whiten(advantages, response_mask)
    return advantages, returns


def grpo_advantages(scores: jnp.ndarray, response_mask: jnp.ndarray, group_ids: jnp.ndarray,
                    num_groups: int | None = None, eps: float = GRPO_EPS,
                    norm_by_std: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    """GRPO outcome advantages ``(advantages [N, R], returns [N, R])``: (s - μ_g)/(σ_g + eps) on every response token.

    ``norm_by_std=False`` drops the division (verl's ``norm_adv_by_std_in_grpo=False``, "Dr. GRPO"): dividing by
    σ_g weights each group by 1/σ_g, so nearly solved questions (small σ) dominate the update.

    ``scores`` is ``[N]`` per-sequence or ``[N, R]`` token-level (summed over R, as upstream). ``group_ids`` ``[N]``
    are dense ints in ``[0, num_groups)`` (``num_groups`` static, default N; ids outside it are silently dropped by
    the segment sums, so build them with ``dense_group_ids``). σ is the
    unbiased std; a singleton group gets μ=0, σ=1 (as upstream). Deliberate difference: groups are keyed by a
    per-prompt id, not upstream's per-source dataset index (which collides between NQ and HotpotQA).
    """
    dtype = jnp.result_type(scores.dtype, jnp.float32)
    seq_scores = (scores.sum(axis=-1) if scores.ndim == 2 else scores).astype(dtype)   # [N]
    num_groups = seq_scores.shape[0] if num_groups is None else num_groups
    count = jax.ops.segment_sum(jnp.ones_like(seq_scores), group_ids, num_groups)     # [G]
    mean = jax.ops.segment_sum(seq_scores, group_ids, num_groups) / jnp.maximum(count, 1.0)   # [G]
    sq_dev = jnp.square(seq_scores - mean[group_ids])                                 # [N]
    std = jnp.sqrt(jax.ops.segment_sum(sq_dev, group_ids, num_groups) / jnp.maximum(count - 1.0, 1.0))  # [G]
    singleton = count[group_ids] <= 1                                                 # [N]
    row_mean = jnp.where(singleton, 0.0, mean[group_ids])
    row_std = jnp.where(singleton, 1.0, std[group_ids])
    row_adv = seq_scores - row_mean                                                   # [N]
    if norm_by_std:
        row_adv = row_adv / (row_std + eps)
    advantages = row_adv[:, None] * response_mask.astype(dtype)                       # [N, R]
    return advantages, advantages


def dense_group_ids(keys: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Host helper: per-row group keys (e.g. ``(data_source, index)`` or a prompt uid) -> dense int32 ids, count."""
    lookup: dict[Hashable, int] = {}
    ids = np.asarray([lookup.setdefault(k, len(lookup)) for k in keys], dtype=np.int32)
    return ids, len(lookup)


# ----------------------------------------------------------------------------------------------- losses

def entropy_from_logits(logits: jnp.ndarray) -> jnp.ndarray:
    """Entropy of softmax(logits) over the last axis: logsumexp(z) - Σ softmax(z)·z. ``[..., V] -> [...]``."""
    probs = jax.nn.softmax(logits, axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.sum(probs * logits, axis=-1)


def _sum_count(per_token: jnp.ndarray, mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    count = jnp.sum(mask.astype(per_token.dtype))
    total = masked_sum(per_token, mask)
    return total / jnp.maximum(count, 1.0), total, count


def policy_loss(logp: jnp.ndarray, old_logp: jnp.ndarray, advantages: jnp.ndarray, loss_mask: jnp.ndarray,
                clip_ratio: float = 0.2) -> tuple[jnp.ndarray, dict]:
    """PPO clipped surrogate, token-mean over ``loss_mask``: mean(max(-A·ρ, -A·clip(ρ, 1±ε))), ρ = exp(logp-old).

    ``aux``: ``loss_sum``/``count`` (exact accumulation), ``clipfrac`` (share of tokens where clipping binds) and
    ``approx_kl`` = mean(old_logp - logp).
    """
    ratio = jnp.exp(logp - old_logp)                                               # [N, R]
    unclipped = -advantages * ratio                                                # [N, R]
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)    # [N, R]
    loss, total, count = _sum_count(jnp.maximum(unclipped, clipped), loss_mask)
    aux = {"loss_sum": total, "count": count,
           "clipfrac": masked_mean((clipped > unclipped).astype(loss.dtype), loss_mask),
           "approx_kl": masked_mean(old_logp - logp, loss_mask)}
    return loss, aux


def value_loss(values: jnp.ndarray, old_values: jnp.ndarray, returns: jnp.ndarray, value_mask: jnp.ndarray,
               clip_range: float = 0.5) -> tuple[jnp.ndarray, dict]:
    """Clipped value loss ½·mean(max((v-G)², (v_clip-G)²)) over ``value_mask``; v_clip = old + clip(v - old, ±c).

    ``aux``: ``loss_sum`` (½ included)/``count`` and ``clipfrac`` (share of tokens where the clipped error wins).
    """
    clipped_values = old_values + jnp.clip(values - old_values, -clip_range, clip_range)   # [N, R]
    err = jnp.square(values - returns)                                                     # [N, R]
    err_clipped = jnp.square(clipped_values - returns)                                     # [N, R]
    loss, total, count = _sum_count(0.5 * jnp.maximum(err, err_clipped), value_mask)
    aux = {"loss_sum": total, "count": count,
           "clipfrac": masked_mean((err_clipped > err).astype(loss.dtype), value_mask)}
    return loss, aux


def kl_loss(logp: jnp.ndarray, ref_logp: jnp.ndarray, loss_mask: jnp.ndarray,
            kind: str = "low_var_kl") -> tuple[jnp.ndarray, dict]:
    """KL-to-reference as a loss term (GRPO's ``use_kl_loss``): token-mean of ``kl_estimate`` over ``loss_mask``."""
    loss, total, count = _sum_count(kl_estimate(logp, ref_logp, kind), loss_mask)
    return loss, {"loss_sum": total, "count": count}
