"""Value model: the policy's backbone (no LM head) plus a scalar value head with bias, as in verl's PPO critic."""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import Transformer

Array = jax.Array


class Critic(nnx.Module):
    """V(s_t) for every token position: `values = hidden @ w + b`, computed in f32. Output [B, T]."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, head_std: float = 0.0):
        self.config = config
        self.backbone = Transformer(config, rngs=rngs, lm_head=False)
        w = head_std * jax.random.normal(rngs.params(), (config.hidden_size,), jnp.float32)
        self.value_head = nnx.Param(w, logical_axes=("embed",))
        self.value_bias = nnx.Param(jnp.zeros((), jnp.float32), logical_axes=())

    def __call__(self, tokens: Array, positions: Array, token_mask: Optional[Array] = None,
                 segment_ids: Optional[Array] = None) -> Array:
        hidden, _ = self.backbone.hidden_states(tokens, positions, token_mask,
                                                segment_ids=segment_ids)  # [B, T, E]
        head = self.value_head[...].astype(jnp.float32)
        return jnp.einsum("bte,e->bt", hidden.astype(jnp.float32), head) + self.value_bias[...]


def critic_from_policy(policy: Transformer, seed: int = 0, head_std: float = 0.0) -> Critic:
    """A critic whose backbone is a copy of the policy's weights (embedding, layers, final norm).

    The value head starts at zero (values 0 everywhere) unless `head_std` > 0, so early advantages are the
    raw returns rather than noise from a random head. Copies keep each array's sharding and are fresh buffers,
    so the policy can later be donated to a jitted update without invalidating the critic.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Critic(policy.config, rngs=nnx.Rngs(seed))))
    _, policy_state = nnx.split(policy, nnx.Param)
    for name in ("embed", "final_norm", "layers"):
        state["backbone"][name] = jax.tree.map(jnp.copy, policy_state[name])
    head = head_std * jax.random.normal(jax.random.key(seed), (policy.config.hidden_size,), jnp.float32)
    state["value_head"] = state["value_head"].replace(value=head)
    state["value_bias"] = state["value_bias"].replace(value=jnp.zeros((), jnp.float32))
    return nnx.merge(graphdef, state)
