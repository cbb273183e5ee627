"""Sharded decode on a 2x4 (data x tensor) fake-device mesh equals single-device decode."""
import jax
import numpy as np
import pytest

from rr1_jax.generate import Sampler, SamplingParams, pad_batch
from rr1_jax.parallel.mesh import DECODE_RULES, make_mesh, shard_params

pytestmark = pytest.mark.mesh

PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18], [19, 20, 21]]


def two_turns(sampler, config, params):
    state = sampler.init_state(config, len(PROMPTS), 32, seed=5, turn_budget=4)
    tokens, lengths = pad_batch(PROMPTS, 8, 0, align="left")
    state = sampler.prefill(params, state, tokens, lengths)
    state, first = sampler.decode_segment(params, state, 4)
    obs, obs_lengths = pad_batch([[30, 31], [], [32, 33, 34], [35]], 4, 0, align="right")
    state = sampler.append(params, state, obs, obs_lengths, np.array([True, False, True, True]))
    state, second = sampler.decode_segment(params, state, 4)
    # one chosen slot: K=1 rows on one device, K=2 (the data axis) on the mesh
    state = sampler.append(params, state, obs, obs_lengths, np.array([False, False, True, False]))
    state, third = sampler.decode_segment(params, state, 4)
    return state, jax.tree.map(np.asarray, (first, second, third))


@pytest.mark.parametrize("sampling", [SamplingParams(greedy=True), SamplingParams(temperature=1.0, top_p=0.9)],
                         ids=["greedy", "sampled"])
def test_sharded_decode_equals_single_device(tiny_model, mesh_devices, sampling):
    config, graphdef, params = tiny_model
    single = jax.device_put(params, mesh_devices[0])
    _, expected = two_turns(Sampler(graphdef, sampling), config, single)
    mesh = make_mesh(data=2, fsdp=1, tensor=4, devices=mesh_devices)
    sharded_params = shard_params(params, DECODE_RULES, mesh)
    state, got = two_turns(Sampler(graphdef, sampling, mesh=mesh), config, sharded_params)
    assert state.cache.k.sharding.spec[1] == "data"  # slots are really split over the data axis
    assert len(state.cache.k.sharding.device_set) == 8
    assert Sampler(graphdef, mesh=mesh).append_rows(1, 4) == 2 and Sampler(graphdef).append_rows(1, 4) == 1
    for exp, out in zip(expected, got):
        np.testing.assert_array_equal(out.tokens, exp.tokens)
        np.testing.assert_array_equal(out.num_tokens, exp.num_tokens)
        # tensor-split matmuls sum in another order: ~1e-4 apart at XLA's default optimisation level
        np.testing.assert_allclose(out.logprobs, exp.logprobs, atol=3e-4)
