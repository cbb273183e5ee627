"""Per-slot starts for continuous batching: untouched slots stay bit-identical, a started slot equals a fresh
prefill of its prompt, stops touch nothing but `active`, and after warm-up nothing compiles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rr1_jax.generate import Sampler, SamplingParams, count_compilations, pad_batch
from rr1_jax.generate.slots import SlotBatch, seed_key
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import abstract_model

B, CACHE, WIDTH, STEPS = 4, 48, 16, 4
PROMPTS = {0: [5, 6, 7], 1: [8, 9, 10, 11, 12], 2: [13, 14], 3: [15, 16, 17, 18]}


@pytest.fixture(scope="module")
def engine():
    config = ModelConfig.tiny()
    graphdef, shapes = nnx.split(abstract_model(config), nnx.Param)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.2, x.shape), x.dtype), shapes)
    return config, params, Sampler(graphdef, SamplingParams(temperature=0.8), eos_ids=[1])


def host(state):
    return jax.tree.map(np.asarray, state)


def assert_slots_equal(a, b, slots):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        axis = 1 if x.ndim == 5 else 0  # cache k/v carry the slot axis second
        np.testing.assert_array_equal(np.take(x, slots, axis), np.take(y, slots, axis))


def test_start_one_slot_leaves_others_bit_identical_and_equals_a_fresh_prefill(engine):
    config, params, sampler = engine
    slots = SlotBatch(sampler, params, config, B, CACHE, [WIDTH])
    slots.write(starts=PROMPTS, budgets={b: STEPS for b in range(B)}, seeds={b: b for b in range(B)})
    first = slots.decode(STEPS)
    assert all(1 <= len(t) <= STEPS for t in first.tokens)
    before = host(slots.state)
    new_prompt = [20, 21, 22, 23, 24, 25]
    slots.write(starts={2: new_prompt}, budgets={2: STEPS}, seeds={2: 99})
    after = host(slots.state)
    assert_slots_equal(after, before, [0, 1, 3])
    # slot 2 now looks exactly as a right-aligned prefill of its prompt into a fresh state would leave it
    fresh = sampler.init_state(config, B, CACHE, seed=0, turn_budget=STEPS)
    tokens, lengths = pad_batch([[], [], new_prompt, []], WIDTH, 0, align="right")
    fresh = sampler.prefill(params, fresh, tokens, lengths, align="right")
    fresh = fresh._replace(keys=fresh.keys.at[2].set(jnp.asarray(seed_key(99))))
    ref = host(fresh)
    n = len(new_prompt)
    assert after.cache.end[2] == ref.cache.end[2] == n and after.next_position[2] == n and after.active[2]
    np.testing.assert_array_equal(after.cache.valid[2], ref.cache.valid[2])
    np.testing.assert_allclose(after.cache.k[:, 2, :n], ref.cache.k[:, 2, :n], atol=1e-5)
    np.testing.assert_allclose(after.cache.v[:, 2, :n], ref.cache.v[:, 2, :n], atol=1e-5)
    np.testing.assert_allclose(after.logits[2], ref.logits[2], atol=1e-4)
    for name in ("turn_tokens", "matcher_state", "stop_reason", "stop_string", "keys", "turn_budget"):
        np.testing.assert_array_equal(getattr(after, name)[2], getattr(ref, name)[2])
    # and it samples the same continuation as the fresh prefill (same key, same logits)
    _, fresh_out = sampler.decode_segment(params, fresh, STEPS)
    assert slots.decode(STEPS).tokens[2] == np.asarray(fresh_out.tokens[2, :fresh_out.num_tokens[2]]).tolist()


def test_resume_and_stop_touch_only_their_slots_and_warm_engine_compiles_nothing(engine):
    config, params, sampler = engine
    slots = SlotBatch(sampler, params, config, B, CACHE, [WIDTH])
    slots.warmup(STEPS)
    assert not np.asarray(slots.state.active).any() and not np.asarray(slots.state.cache.end).any()
    with count_compilations() as compiles:
        slots.write(starts={0: PROMPTS[0], 3: PROMPTS[3]}, budgets={0: 2, 3: 2}, seeds={0: 1, 3: 2})
        segment = slots.decode(STEPS)
        assert segment.tokens[1] == segment.tokens[2] == [] and 1 <= len(segment.tokens[0]) <= 2
        before = host(slots.state)
        slots.write(resumes={0: [30, 31]}, starts={1: PROMPTS[1]}, budgets={0: 2, 1: 2})
        mid = host(slots.state)
        assert_slots_equal(mid, before, [2, 3])
        assert mid.cache.end[0] == before.cache.end[0] + 2 and mid.active[0] and mid.active[1]
        slots.write(stops=[1])
        stopped = host(slots.state)
        assert not stopped.active[1]
        stopped_rest = stopped._replace(active=mid.active)
        assert_slots_equal(stopped_rest, mid, [0, 1, 2, 3])  # a stop changes nothing but `active`
        slots.write(starts={0: PROMPTS[2], 1: PROMPTS[1], 2: PROMPTS[0], 3: PROMPTS[3]})  # all 4: full-batch path
        slots.decode(STEPS)
    assert compiles.count == 0


def test_write_rejects_conflicting_or_empty_requests(engine):
    config, params, sampler = engine
    slots = SlotBatch(sampler, params, config, B, CACHE, [WIDTH])
    with pytest.raises(ValueError, match="more than one of start / resume / stop"):
        slots.write(starts={0: [5]}, stops=[0])
    with pytest.raises(ValueError, match="non-empty prompt"):
        slots.write(starts={0: []})
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        slots.write(starts={0: list(range(2, 2 + WIDTH + 1))})
