"""Packed SFT rows: the layout keeps every sequence whole and apart, and the loss and gradients equal the padded
rows' (the packed path is a speed-up, not a different objective)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import KVCache, init_model
from rr1_jax.rl.packing import TokenSequence, pack, pack_steps, unpadded_sequences
from rr1_jax.rl.sft import SFTConfig, packed_sft_loss, policy_token_index, sft_loss, sft_train
from rr1_jax.rollout.trajectory import build_trajectories

CONFIG = ModelConfig.tiny()


def _random_trajectories(seed=0, rows=9, num_rows=10, prompt_width=12, response_width=20):
    """Rows of random lengths, ~60% policy tokens, and a padding row at the end."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(1, CONFIG.vocab_size, rng.integers(2, prompt_width + 1)).tolist() for _ in range(rows)]
    responses = [rng.integers(1, CONFIG.vocab_size, rng.integers(2, response_width + 1)).tolist()
                 for _ in range(rows)]
    flags = [(rng.random(len(r)) < 0.6).tolist() for r in responses]
    flags[0] = [True] * len(responses[0])  # the first response token is a target (predicted from the prompt)
    return build_trajectories(prompts, responses, flags, None, prompt_width, response_width, 0, num_rows)


def test_layout_keeps_each_sequence_whole_contiguous_and_numbered():
    traj = _random_trajectories()
    sequences = unpadded_sequences(traj)
    assert len(sequences[-1].ids) == 0  # the padding row contributes nothing
    batch = pack(sequences, 40, pad_id=0, num_rows=9, num_targets=64)
    found = []
    for r in range(9):
        segments = batch.segments[r]
        used = np.flatnonzero(segments)
        assert used.size == 0 or (used == np.arange(used.size)).all()  # sequences first, padding after
        for s in np.unique(segments[segments > 0]):
            where = np.flatnonzero(segments == s)
            assert (np.diff(where) == 1).all() and (batch.positions[r, where] == np.arange(where.size)).all()
            found.append(batch.tokens[r, where].tolist())
        targets = batch.predict_index[r][batch.predict_index[r] >= 0]
        assert (segments[targets] == segments[targets + 1]).all() and (segments[targets] > 0).all()
    assert sorted(found) == sorted(s.ids.tolist() for s in sequences if len(s.ids))
    assert (batch.predict_index >= 0).sum() == np.asarray(traj.loss_mask).sum()


def test_steps_share_target_slots_and_round_row_counts():
    traj = _random_trajectories(rows=9, num_rows=9)
    sequences = unpadded_sequences(traj)
    steps = [np.arange(9), np.arange(3), np.array([4, 1])]
    batches = pack_steps(sequences, steps, 40, pad_id=0, row_multiple=2, target_multiple=8)
    assert len({b.predict_index.shape[1] for b in batches}) == 1 and batches[0].predict_index.shape[1] % 8 == 0
    assert all(b.tokens.shape[0] % 2 == 0 and b.tokens.shape[1] == 40 for b in batches)
    for b, index in zip(batches, steps):
        assert (b.predict_index >= 0).sum() == np.asarray(traj.loss_mask)[index].sum()


def test_a_sequence_wider_than_the_row_is_one_clear_error():
    long = TokenSequence(np.arange(1, 50, dtype=np.int32), np.ones(49, bool))
    with pytest.raises(ValueError, match="49 tokens does not fit a packed row of 32"):
        pack([long], 32, pad_id=0, num_rows=2, num_targets=64)


def test_segment_ids_confine_attention_to_each_sequence():
    model = init_model(CONFIG, seed=0)
    rng = np.random.default_rng(1)
    a, b = rng.integers(1, CONFIG.vocab_size, 7), rng.integers(1, CONFIG.vocab_size, 5)
    tokens = jnp.asarray(np.concatenate([a, b, [0, 0]])[None])  # [1, 14]
    positions = jnp.asarray(np.concatenate([np.arange(7), np.arange(5), [0, 0]])[None])
    segments = jnp.asarray(np.array([1] * 7 + [2] * 5 + [0, 0])[None])
    packed, _ = model.hidden_states(tokens, positions, segments > 0, segment_ids=segments)
    alone_a, _ = model.hidden_states(jnp.asarray(a[None]), jnp.arange(7)[None])
    alone_b, _ = model.hidden_states(jnp.asarray(b[None]), jnp.arange(5)[None])
    np.testing.assert_allclose(packed[0, :7], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(packed[0, 7:12], alone_b[0], atol=1e-5)
    # without the segment ids the second sequence sees the first (the check can fail)
    mixed, _ = model.hidden_states(tokens, positions, segments > 0)
    assert float(jnp.max(jnp.abs(mixed[0, 7:12] - alone_b[0]))) > 1e-3


def test_segment_ids_with_a_cache_are_refused():
    model = init_model(CONFIG, seed=0)
    shape = (CONFIG.num_layers, 1, 8, CONFIG.num_kv_heads, CONFIG.head_dim)
    cache = KVCache(jnp.zeros(shape), jnp.zeros(shape), jnp.zeros((1, 8), bool), jnp.zeros((1,), jnp.int32))
    ones = jnp.ones((1, 2), jnp.int32)
    with pytest.raises(ValueError, match="cache-free"):
        model.hidden_states(ones, ones, cache=cache, segment_ids=ones)


def test_packed_loss_and_gradients_equal_the_padded_rows():
    traj = _random_trajectories()
    graphdef, state = nnx.split(init_model(CONFIG, seed=0), nnx.Param)
    params = nnx.to_pure_dict(state)
    index = policy_token_index(np.asarray(traj.loss_mask), multiple=4)
    (padded, count), padded_grads = jax.value_and_grad(
        lambda p: sft_loss(graphdef, p, traj, 8, index), has_aux=True)(params)
    batch = pack_steps(unpadded_sequences(traj), [np.arange(10)], 40, pad_id=0)[0]
    assert batch.tokens.shape[0] < 10  # fewer rows than the padded batch
    (packed, packed_count), packed_grads = jax.value_and_grad(
        lambda p: packed_sft_loss(graphdef, p, batch, 8), has_aux=True)(params)
    assert int(packed_count) == int(count) == int(np.asarray(traj.loss_mask).sum())
    assert float(packed) == pytest.approx(float(padded), rel=1e-6)
    for g_padded, g_packed in zip(jax.tree.leaves(padded_grads), jax.tree.leaves(packed_grads)):
        np.testing.assert_allclose(g_packed, g_padded, atol=1e-6)


@pytest.mark.slow
def test_sft_train_packed_follows_the_padded_run():
    traj = _random_trajectories(rows=16, num_rows=16)
    auxiliary = _random_trajectories(seed=3, rows=12, num_rows=12, prompt_width=8, response_width=8)
    model = init_model(CONFIG, seed=0)
    cfg = SFTConfig(lr=3e-3, steps=6, batch_size=4, logprob_chunk=8)
    _, padded = sft_train(model, traj, cfg, auxiliary=auxiliary, auxiliary_batch_size=2)
    _, packed = sft_train(model, traj, SFTConfig(**{**cfg.__dict__, "pack": True}), auxiliary=auxiliary,
                          auxiliary_batch_size=2)
    assert padded[-1] < padded[0]
    np.testing.assert_allclose(packed, padded, rtol=1e-4)
