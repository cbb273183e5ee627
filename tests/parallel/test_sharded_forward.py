"""Sharded forward on a 2x4 fake-device mesh equals the single-device forward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import KVCache, forward, init_model, positions_from_mask
from rr1_jax.parallel.mesh import DECODE_RULES, TRAIN_RULES, batch_sharding, make_mesh, shard_params

pytestmark = pytest.mark.mesh


@pytest.mark.parametrize("shape,rules", [((2, 4, 1), TRAIN_RULES), ((2, 1, 4), TRAIN_RULES),
                                         ((1, 2, 4), TRAIN_RULES), ((2, 1, 4), DECODE_RULES)])
def test_sharded_forward_equals_single_device(mesh_devices, shape, rules):
    config = ModelConfig.tiny(qkv_bias=True)
    model = init_model(config, seed=3)
    graphdef, params = nnx.split(model, nnx.Param)
    mask = np.ones((8, 12), bool)
    mask[::2, :4] = False
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (8, 12))
    positions = positions_from_mask(jnp.asarray(mask))
    expected = forward(graphdef, params, tokens, positions, mask)

    mesh = make_mesh(*shape, devices=mesh_devices)
    sharded = shard_params(params, rules, mesh)
    q_sharding = sharded["layers"]["q_proj"].sharding
    assert isinstance(q_sharding, NamedSharding) and q_sharding.spec != P()  # really sharded
    put = lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))
    got = jax.jit(forward, static_argnums=0)(graphdef, sharded, put(tokens), put(positions), put(mask))
    valid = mask
    np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(expected)[valid], atol=1e-5)


def test_sharded_cached_forward(mesh_devices):
    config = ModelConfig.tiny()
    graphdef, params = nnx.split(init_model(config, seed=4), nnx.Param)
    tokens = np.random.default_rng(1).integers(0, config.vocab_size, (8, 6))
    positions = jnp.broadcast_to(jnp.arange(6), (8, 6))
    expected, _ = forward(graphdef, params, tokens, positions, None, KVCache.zeros(config, 8, 16))
    mesh = make_mesh(4, 1, 2, devices=mesh_devices)  # 2 KV heads over the 2-way tensor axis
    sharded = shard_params(params, DECODE_RULES, mesh)
    cache = KVCache.zeros(config, 8, 16)
    cache_sharding = NamedSharding(mesh, P(None, ("data", "fsdp"), None, "tensor"))
    cache = cache._replace(k=jax.device_put(cache.k, cache_sharding), v=jax.device_put(cache.v, cache_sharding))
    got, _ = jax.jit(forward, static_argnums=0)(graphdef, sharded, tokens, positions, None, cache)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_weights_load_straight_onto_mesh(mesh_devices, tmp_path):
    from rr1_jax.model.weights import load_hf_model
    from tests.model.hf_fixtures import hf_logits, left_padded_batch, make_hf_model

    hf = make_hf_model("qwen2_tied_bias", str(tmp_path))
    mesh = make_mesh(1, 4, 2, devices=mesh_devices)
    model = load_hf_model(str(tmp_path), mesh=mesh, rules=TRAIN_RULES)
    assert model.layers.gate_proj[...].sharding.spec == P(None, "fsdp", "tensor")
    ids, mask, positions = left_padded_batch(model.config.vocab_size)
    graphdef, params = nnx.split(model, nnx.Param)
    got = jax.jit(forward, static_argnums=0)(graphdef, params, ids, positions, mask.astype(bool))
    valid = mask.astype(bool)
    assert np.abs(np.asarray(got)[valid] - hf_logits(hf, ids, mask, positions)[valid]).max() <= 1e-4
