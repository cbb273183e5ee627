"""Critic: policy backbone + scalar value head."""
import jax.numpy as jnp
import numpy as np

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.critic import critic_from_policy
from rr1_jax.model.transformer import init_model, positions_from_mask


def test_critic_starts_from_policy_backbone():
    policy = init_model(ModelConfig.tiny(), seed=1)
    critic = critic_from_policy(policy, head_std=0.5)
    mask = jnp.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], bool)
    tokens = jnp.arange(12).reshape(2, 6)
    positions = positions_from_mask(mask)
    values = critic(tokens, positions, mask)  # [B, T]
    hidden, _ = policy.hidden_states(tokens, positions, mask)
    expected = np.asarray(hidden) @ np.asarray(critic.value_head[...]) + float(critic.value_bias[...])
    assert values.shape == (2, 6)
    np.testing.assert_allclose(np.asarray(values), expected, atol=1e-5)
    assert critic.backbone.lm_head is None  # no LM head in the value model
    assert critic.backbone.embed[...] is not policy.embed[...]  # own buffers: the policy may be donated


def test_zero_head_gives_zero_values():
    policy = init_model(ModelConfig.tiny(qkv_bias=True, tie_embeddings=True))
    critic = critic_from_policy(policy)
    values = critic(jnp.ones((1, 4), jnp.int32), jnp.arange(4)[None])
    np.testing.assert_array_equal(np.asarray(values), 0.0)
