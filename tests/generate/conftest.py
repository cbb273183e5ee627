"""Shared fixtures for generation tests: the tiny f32 model, split once per session."""
import pytest
from flax import nnx

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import init_model


@pytest.fixture(scope="session")
def tiny_model():
    """(config, graphdef, params) of the 2-layer tiny model in f32 (std 0.2 so distributions are not flat)."""
    config = ModelConfig.tiny()
    model = init_model(config, seed=0)
    graphdef, params = nnx.split(model, nnx.Param)
    params = jax_scale(params, 10.0)
    return config, graphdef, params


def jax_scale(params, factor):
    """Sharpen the random model: larger weights give peaked, seed-sensitive next-token distributions."""
    import jax

    return jax.tree.map(lambda x: x * factor, params)
