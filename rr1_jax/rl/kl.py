"""KL estimators between the policy and the frozen reference, and the fixed/adaptive KL coefficient controllers.

Public names are re-exported from ``rr1_jax.rl.algos``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

KL_KINDS = ("kl", "abs", "mse", "low_var_kl")
LOW_VAR_KL_CLAMP = 10.0


def kl_estimate(logp: jnp.ndarray, ref_logp: jnp.ndarray, kind: str = "kl") -> jnp.ndarray:
    """Per-token KL estimate from log-probs of the sampled tokens (same shape out, e.g. ``[N, R]``).

    ``kl`` (k1): logp - ref (signed); ``abs``: |logp - ref|; ``mse`` (k2): ½(logp - ref)²;
    ``low_var_kl`` (k3): exp(ref - logp) - (ref - logp) - 1, clamped to ±10 as verl does.
    ``kind`` is static under jit.
    """
    if kind not in KL_KINDS:
        raise ValueError(f"KL estimator kind must be one of {KL_KINDS}, got {kind!r}")
    diff = logp - ref_logp                                  # [N, R]
    if kind == "kl":
        return diff
    if kind == "abs":
        return jnp.abs(diff)
    if kind == "mse":
        return 0.5 * jnp.square(diff)
    log_ratio = -diff                                       # ref - logp
    k3 = jnp.exp(log_ratio) - log_ratio - 1.0
    return jnp.clip(k3, -LOW_VAR_KL_CLAMP, LOW_VAR_KL_CLAMP)


class FixedKLController(NamedTuple):
    """Constant KL coefficient β (verl ``kl_ctrl.type=fixed``; Router-R1 uses β=0.001). A pytree."""

    value: jnp.ndarray | float

    def update(self, current_kl, n_steps) -> "FixedKLController":
        """No-op: β stays fixed."""
        del current_kl, n_steps
        return self


class AdaptiveKLController(NamedTuple):
    """Adaptive β (Ziegler et al., as verl): β ← β·(1 + clip(kl/target - 1, ±0.2)·n_steps/horizon). A pytree.

    ``n_steps`` is the number of trajectories in the step (verl passes the batch size).
    """

    value: jnp.ndarray | float
    target: jnp.ndarray | float
    horizon: jnp.ndarray | float

    def update(self, current_kl, n_steps) -> "AdaptiveKLController":
        """The controller after observing ``current_kl`` over ``n_steps`` trajectories (this step used the old β)."""
        error = jnp.clip(current_kl / self.target - 1.0, -0.2, 0.2)
        return self._replace(value=self.value * (1.0 + error * n_steps / self.horizon))


def make_kl_controller(kind: str, coef: float, target: float | None = None,
                       horizon: float | None = None) -> FixedKLController | AdaptiveKLController:
    """A KL controller from config values (``kind`` is "fixed" or "adaptive"; adaptive needs target and horizon)."""
    if kind == "fixed":
        return FixedKLController(value=jnp.float32(coef))
    if kind == "adaptive":
        if target is None or horizon is None or not target > 0 or not horizon > 0:
            raise ValueError(f"adaptive KL controller needs target_kl > 0 and horizon > 0, got "
                             f"target={target!r}, horizon={horizon!r}")
        return AdaptiveKLController(value=jnp.float32(coef), target=jnp.float32(target),
                                    horizon=jnp.float32(horizon))
    raise ValueError(f"KL controller kind must be 'fixed' or 'adaptive', got {kind!r}")
