"""Chunked log-probs/entropies equal a full-logits log_softmax; values and masks use verl's P+t-1 alignment."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rr1_jax.rl.algos import entropy_from_logits
from rr1_jax.rl.logprobs import map_rows, token_logprobs, token_values, value_mask
from tests.rl.ppo_fixtures import PROMPT_WIDTH, random_trajectories, tiny_models

TEMPERATURE = 0.7


def _reference(actor, traj):
    """Full [N, T, V] logits → log_softmax at the target ids, and the entropy, of every response position."""
    logits = actor(traj.tokens, traj.positions, traj.attention_mask) / TEMPERATURE  # [N, T, V]
    logits = logits[:, PROMPT_WIDTH - 1:-1]  # [N, R, V]: position P+t-1 predicts response token t
    targets = jnp.asarray(traj.tokens[:, PROMPT_WIDTH:])
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
    return np.asarray(logp), np.asarray(entropy_from_logits(logits))


def test_chunked_logprobs_and_entropy_equal_full_logits():
    actor, _ = tiny_models()
    traj = random_trajectories()
    graphdef, state = nnx.split(actor, nnx.Param)
    params = nnx.to_pure_dict(state)
    want_logp, want_entropy = _reference(actor, traj)
    fn = jax.jit(token_logprobs, static_argnums=(0, 5), static_argnames=("chunk_size", "with_entropy"))
    for chunk in (5, 1000):  # 5 does not divide R=28 (padded last chunk); 1000 > R (a single chunk)
        logp, entropy = fn(graphdef, params, traj.tokens, traj.positions, traj.attention_mask, PROMPT_WIDTH,
                           temperature=TEMPERATURE, chunk_size=chunk, with_entropy=True)
        np.testing.assert_allclose(np.asarray(logp), want_logp, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(entropy), want_entropy, atol=1e-5, rtol=0)
    logp_only, no_entropy = fn(graphdef, params, traj.tokens, traj.positions, traj.attention_mask, PROMPT_WIDTH,
                               temperature=TEMPERATURE, chunk_size=5)
    assert no_entropy is None
    np.testing.assert_allclose(np.asarray(logp_only), want_logp, atol=1e-5, rtol=0)


def test_row_chunks_equal_one_call():
    actor, _ = tiny_models()
    traj = random_trajectories()
    graphdef, state = nnx.split(actor, nnx.Param)
    params = nnx.to_pure_dict(state)
    fn = lambda t, p, m: token_logprobs(graphdef, params, t, p, m, PROMPT_WIDTH, chunk_size=16)[0]  # noqa: E731
    arrays = (jnp.asarray(traj.tokens), jnp.asarray(traj.positions), jnp.asarray(traj.attention_mask))
    whole = jax.jit(lambda *a: map_rows(fn, a, None))(*arrays)
    chunked = jax.jit(lambda *a: map_rows(fn, a, 2))(*arrays)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), atol=1e-6)


def test_values_read_the_position_before_each_response_token():
    actor, critic = tiny_models()
    traj = random_trajectories()
    graphdef, state = nnx.split(critic, nnx.Param)
    values = token_values(graphdef, nnx.to_pure_dict(state), traj.tokens, traj.positions, traj.attention_mask,
                          PROMPT_WIDTH)
    full = critic(traj.tokens, traj.positions, traj.attention_mask)  # [N, P+R]
    np.testing.assert_allclose(np.asarray(values), np.asarray(full[:, PROMPT_WIDTH - 1:-1]), atol=1e-6)
    mask = np.asarray(value_mask(traj.attention_mask, PROMPT_WIDTH))
    response = np.asarray(traj.response_mask)
    lengths = response.sum(-1)
    for i, n in enumerate(lengths):
        if n:  # shifted by one: the last prompt position and the terminal index L_i are both in the mask
            assert mask[i, : n + 1].all() and not mask[i, n + 1:].any()
        else:  # a dummy row has no real token at all
            assert not mask[i].any()
