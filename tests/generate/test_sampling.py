"""Sampling rules: allowed sets of top-k/top-p, frequencies, behaviour log-probs, greedy, and buckets."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr1_jax.generate import SamplingParams, behaviour_log_probs, pad_batch, pick_bucket, sample_tokens
from rr1_jax.generate.sampling import slot_keys, top_p_threshold

LOGITS = np.log(np.array([0.30, 0.20, 0.15, 0.12, 0.10, 0.06, 0.04, 0.03], np.float32))


def reference_distribution(logits, temperature, top_k, top_p):
    """NumPy reference: temperature, keep top-k, keep the smallest top-p prefix, renormalise."""
    p = np.exp(logits / temperature)
    p /= p.sum()
    order = np.argsort(-p)
    keep = np.zeros_like(p, bool)
    keep[order[:top_k if top_k > 0 else len(p)]] = True
    p = np.where(keep, p, 0)
    p /= p.sum()
    cumulative_before = np.cumsum(p[order]) - p[order]
    keep_p = np.zeros_like(keep)
    keep_p[order[cumulative_before < top_p]] = True
    p = np.where(keep & keep_p, p, 0)
    return p / p.sum()


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 3, 1.0), (1.0, -1, 0.7), (0.7, 5, 0.8)])
def test_samples_stay_in_allowed_set_with_renormalised_frequencies(temperature, top_k, top_p):
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    expected = reference_distribution(LOGITS, temperature, top_k, top_p)
    log_probs = np.asarray(behaviour_log_probs(jnp.asarray(LOGITS), params))
    np.testing.assert_allclose(np.exp(log_probs), expected, atol=1e-6)
    n = 4000
    logits = jnp.broadcast_to(jnp.asarray(LOGITS), (n, len(LOGITS)))
    ids, chosen, _ = jax.jit(sample_tokens, static_argnums=2)(logits, slot_keys(0, n), params)
    ids, chosen = np.asarray(ids), np.asarray(chosen)
    assert set(ids.tolist()) <= set(np.flatnonzero(expected).tolist())
    np.testing.assert_allclose(chosen, np.log(expected[ids]), atol=1e-5)  # behaviour log-prob of each draw
    frequencies = np.bincount(ids, minlength=len(LOGITS)) / n
    np.testing.assert_allclose(frequencies, expected, atol=0.03)


def test_greedy_is_argmax_and_keys_advance_only_when_sampling():
    logits = jnp.asarray(np.stack([LOGITS, LOGITS[::-1]]))
    keys = slot_keys(0, 2)
    ids, logprobs, next_keys = sample_tokens(logits, keys, SamplingParams(greedy=True))
    assert ids.tolist() == [0, 7] and np.array_equal(next_keys, keys)
    np.testing.assert_allclose(logprobs, np.log([0.30, 0.30]), atol=1e-6)  # model log-prob (T=1, untruncated)
    _, _, next_keys = sample_tokens(logits, keys, SamplingParams())
    assert not np.array_equal(next_keys, keys)


def test_invalid_sampling_params_fail_clearly():
    with pytest.raises(ValueError, match="greedy=True"):
        SamplingParams(temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)


def test_buckets_pad_left_and_right():
    assert pick_bucket(5, [4, 8, 16]) == 8
    with pytest.raises(ValueError, match="largest bucket 16"):
        pick_bucket(17, [4, 8, 16])
    tokens, lengths = pad_batch([[1, 2], [3]], 4, 0, align="left", num_slots=3)
    assert tokens.tolist() == [[0, 0, 1, 2], [0, 0, 0, 3], [0, 0, 0, 0]] and lengths.tolist() == [2, 1, 0]
    tokens, _ = pad_batch([[1, 2]], 3, 9, align="right")
    assert tokens.tolist() == [[1, 2, 9]]


@pytest.mark.parametrize("scale", [8.0, 1.0, 0.05])  # a nucleus of a few tokens, of thousands, of nearly all
def test_top_p_threshold_by_bisection_keeps_the_sorted_nucleus(scale):
    """The bisected threshold keeps exactly what sorting and accumulating in float64 keeps, on 4,096-token rows,
    with tied logits and with top-k's -inf entries; a flat row's float32 sums may move its boundary by a token."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 4096)) * scale).astype(np.float32)  # [B, V]
    logits[1, :10] = logits[1].max()  # ten tied largest logits
    logits[2, 100:] = -np.inf  # what a top-k filter leaves
    threshold = np.asarray(jax.jit(lambda x: top_p_threshold(x, 0.9))(jnp.asarray(logits)))  # [B, 1]
    for row, t in zip(logits, threshold):
        differ = (row >= t) != (reference_distribution(row.astype(np.float64), 1.0, -1, 0.9) > 0)
        assert differ.sum() <= (1 if scale < 1 else 0)
    assert (logits[1, :10] >= threshold[1]).all()  # ties with the threshold are all kept
    log_probs = np.asarray(behaviour_log_probs(jnp.asarray(logits), SamplingParams(top_p=0.9)))
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)
    assert ((log_probs > -np.inf) == (logits >= threshold)).all()
