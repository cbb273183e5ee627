"""Decoder structure: scanned layers, remat, cache/no-cache agreement, positions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import KVCache, forward, init_model, positions_from_mask


def _program_size(num_layers: int) -> int:
    graphdef, params = nnx.split(init_model(ModelConfig.tiny(num_layers=num_layers)), nnx.Param)
    tokens = jnp.zeros((2, 8), jnp.int32)
    lowered = jax.jit(forward, static_argnums=0).lower(graphdef, params, tokens, jnp.zeros((2, 8), jnp.int32))
    return len(lowered.as_text())


def test_program_does_not_grow_with_depth():
    """Layers run under lax.scan: 12 layers lower to (almost) the same program as 2."""
    small, deep = _program_size(2), _program_size(12)
    assert deep < small * 1.02


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
def test_remat_keeps_values_and_gradients(policy):
    base = ModelConfig.tiny()
    graphdef, params = nnx.split(init_model(base, seed=2), nnx.Param)
    remat_graphdef, _ = nnx.split(init_model(base.replace(remat=policy), seed=2), nnx.Param)
    tokens = jnp.arange(16).reshape(2, 8) % base.vocab_size
    positions = jnp.broadcast_to(jnp.arange(8), (2, 8))

    def loss(g, p):
        return jnp.mean(jax.nn.log_softmax(forward(g, p, tokens, positions))[..., 0])

    grad_fn = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
    v0, g0 = grad_fn(graphdef, params)
    v1, g1 = grad_fn(remat_graphdef, params)
    np.testing.assert_allclose(v0, v1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_cache_prefill_then_decode_equals_full_forward():
    config = ModelConfig.tiny()
    graphdef, params = nnx.split(init_model(config, seed=5), nnx.Param)
    model = jax.jit(lambda *args: forward(graphdef, params, *args))
    mask = jnp.array([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 10], bool)
    tokens = jnp.arange(20).reshape(2, 10) * 7 % config.vocab_size
    positions = positions_from_mask(mask)
    full = model(tokens, positions, mask)
    logits, cache = model(tokens[:, :6], positions[:, :6], mask[:, :6], KVCache.zeros(config, 2, 16))
    steps = [logits]
    for t in range(6, 10):  # one token at a time through the cache
        step_logits, cache = model(tokens[:, t:t + 1], positions[:, t:t + 1], mask[:, t:t + 1], cache)
        steps.append(step_logits)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(steps, 1))[np.asarray(mask)],
                               np.asarray(full)[np.asarray(mask)], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(cache.end), [10, 10])


def test_positions_from_left_padded_mask():
    mask = jnp.array([[0, 0, 1, 1], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(np.asarray(positions_from_mask(mask)), [[0, 0, 0, 1], [0, 1, 2, 3]])


def test_named_families_have_published_sizes():
    assert abs(ModelConfig.llama3_2_3b().num_params / 1e9 - 3.21) < 0.02
    assert abs(ModelConfig.llama3_2_1b().num_params / 1e9 - 1.24) < 0.02
    assert abs(ModelConfig.qwen2_5_3b().num_params / 1e9 - 3.09) < 0.02
    assert abs(ModelConfig.qwen2_5_0_5b().num_params / 1e9 - 0.494) < 0.01
    assert abs(ModelConfig.smollm2_135m().num_params / 1e6 - 134.5) < 1.0
