"""Packed PPO updates: the layout keeps every episode whole, and packed losses, gradients and iterations equal
the padded ones."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr1_jax.generate.compile_count import count_compilations
from rr1_jax.rl.packed_updates import fill_fraction, pack_minibatches, plan_packing
from rr1_jax.rl.ppo_config import PPOConfig
from rr1_jax.rl.train_state import ModelDefs, split_params
from rr1_jax.rl.trainer import PPOTrainer
from rr1_jax.rl.updates import PPOBatch, accumulate_gradients, actor_loss_sums, critic_loss_sums
from tests.rl.ppo_fixtures import (ACTOR_OPTIM, CRITIC_OPTIM, SCORES, params_copy, ppo_config,
                                   random_trajectories, tiny_models)


def _flat_norm(a, b) -> float:
    """L2 norm of the difference of two parameter trees."""
    return float(np.sqrt(sum(np.sum((np.asarray(x) - np.asarray(y)) ** 2)
                             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))))


def test_plan_keeps_every_episode_whole_and_in_its_mini_batch():
    traj = random_trajectories(rows=8, real_rows=7, seed=3)
    attention, valid = np.asarray(traj.attention_mask), np.asarray(traj.row_valid)
    order = np.random.default_rng(0).permutation(8)
    for orders, mini_batches in ((None, [range(0, 4), range(4, 8)]), ([order], [order[:4], order[4:]])):
        _check_plan(plan_packing(attention, valid, 4, 2, orders), attention, valid, mini_batches)


def _check_plan(plan, attention, valid, mini_batches):
    e, k, g, m, w = plan.row.shape
    assert e == 1 and k == 2 and m <= 2 and w == attention.shape[1]
    for mb in range(k):
        slots = plan.col[0, mb] >= 0
        rows, cols = plan.row[0, mb][slots], plan.col[0, mb][slots]
        assert set(rows.tolist()) == {int(i) for i in mini_batches[mb] if valid[i]}
        for i in set(rows.tolist()):  # each real token exactly once, in order, one contiguous segment
            np.testing.assert_array_equal(cols[rows == i], np.flatnonzero(attention[i]))
        for row, col, seg in zip(plan.row[0, mb].reshape(-1, w), plan.col[0, mb].reshape(-1, w),
                                 plan.segments[0, mb].reshape(-1, w)):
            filled = col >= 0
            assert filled[:filled.sum()].all()  # a row's episodes sit side by side from its first slot
            for s in set(seg[filled].tolist()):
                assert len(set(row[seg == s].tolist())) == 1 and np.all(np.diff(np.flatnonzero(seg == s)) == 1)
    assert plan.col.size <= attention.size and fill_fraction(plan) >= attention.mean()


def _padded_and_packed_batch(seed=0):
    """A PPOBatch of random per-token arrays on random trajectories, and its packed mini-batches."""
    traj = random_trajectories(rows=8, real_rows=7, seed=seed, lengths=[4, 9, 6, 12, 5, 8, 7])
    rng = np.random.default_rng(seed)
    n, r = traj.loss_mask.shape
    valid = np.asarray(traj.row_valid)[:, None]
    response = np.asarray(traj.response_mask) & valid
    vmask = np.asarray(traj.attention_mask)[:, traj.prompt_width - 1:-1] & valid  # every index a real slot predicts
    rand = lambda: jnp.asarray(rng.normal(size=(n, r)).astype(np.float32) * vmask)  # noqa: E731
    batch = PPOBatch(jnp.asarray(traj.tokens), jnp.asarray(traj.attention_mask), jnp.asarray(traj.positions),
                     jnp.asarray(np.asarray(traj.loss_mask) & valid), jnp.asarray(vmask),
                     jnp.asarray(traj.old_logprobs), rand() - 2.0, rand(), rand() * jnp.asarray(response),
                     rand(), traj.prompt_width)
    plan = plan_packing(np.asarray(traj.attention_mask), np.asarray(traj.row_valid), 8, 8)
    return batch, plan


def test_packed_arrays_sit_at_the_slot_that_predicts_their_token():
    batch, plan = _padded_and_packed_batch()
    assert plan.row.shape[:3] == (1, 1, 1) and plan.row.shape[3] < 7  # fewer rows than episodes
    packed = jax.tree.map(lambda x: np.asarray(x)[0, 0, 0], pack_minibatches(batch, plan))  # the one micro-batch
    p = batch.prompt_width
    for field in ("policy_mask", "value_mask", "old_logp", "advantages", "returns", "values"):
        padded = np.asarray(getattr(batch, field))
        assert np.sum(packed.__getattribute__(field)) == pytest.approx(float(np.sum(padded)), rel=1e-6), field
    rows, cols = plan.row[0, 0, 0], plan.col[0, 0, 0]
    for m, w in zip(*np.nonzero(packed.policy_mask)):  # the target is the token at the response index
        t = cols[m, w] + 1 - p
        assert packed.targets[m, w] == batch.tokens[rows[m, w], p + t]
        assert packed.old_logp[m, w] == batch.old_logp[rows[m, w], t]


@pytest.mark.parametrize("estimator", ["gae", "grpo"])
def test_packed_losses_and_gradients_equal_the_padded_ones(estimator):
    batch, plan = _padded_and_packed_batch(seed=1)
    actor, critic = tiny_models()
    cfg = PPOConfig(adv_estimator=estimator, entropy_coeff=0.01, use_kl_loss=True, kl_loss_coef=0.1,
                    logprob_chunk=8)
    packed = jax.tree.map(lambda x: x[0, 0], pack_minibatches(batch, plan))  # [G=1, M, W]
    padded = jax.tree.map(lambda x: x[None] if hasattr(x, "shape") else x, batch)  # one micro-batch
    for model, loss in ((actor, actor_loss_sums), (critic, critic_loss_sums)):
        graphdef, _, params = split_params(model)
        defs = ModelDefs(actor=graphdef, critic=graphdef)
        kwargs = dict(kl_coef=0.1) if loss is actor_loss_sums else {}
        fn = jax.jit(functools.partial(accumulate_gradients, functools.partial(loss, defs=defs, cfg=cfg, **kwargs)))
        (g_pad, aux_pad), (g_pack, aux_pack) = fn(params, padded), fn(params, packed)
        assert float(aux_pack["count"]) == float(aux_pad["count"]) > 0
        for key in aux_pad:
            if "clipfrac" not in key:  # clip counts flip on float ties; everything else is a sum
                assert float(aux_pack[key]) == pytest.approx(float(aux_pad[key]), rel=1e-5, abs=1e-6), key
        flat_pad, flat_pack = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (g_pad, g_pack))
        assert np.linalg.norm(flat_pack - flat_pad) <= 1e-5 * np.linalg.norm(flat_pad)


@pytest.mark.slow
def test_packed_iterations_follow_the_padded_ones_and_compile_once():
    traj = random_trajectories(rows=8, real_rows=7)
    results = []
    for pack in (False, True):
        actor, critic = tiny_models()
        trainer = PPOTrainer(actor, critic, ppo_config(critic_warmup=1, pack_updates=pack, ppo_epochs=2),
                             ACTOR_OPTIM, CRITIC_OPTIM, seed=0)
        state = trainer.init_state()
        state, _ = trainer.ppo_iteration(state, traj, SCORES)
        state, metrics = trainer.ppo_iteration(state, traj, SCORES)
        results.append((params_copy(state.actor), params_copy(state.critic), metrics))
        if pack:
            assert 0.0 < metrics["perf/packed_fill"] < 1.0
            with count_compilations() as compiled:
                trainer.ppo_iteration(state, traj, SCORES)
            assert compiled.count == 0
    (actor_pad, critic_pad, m_pad), (actor_pack, critic_pack, m_pack) = results
    actor0, critic0 = (params_copy(split_params(m)[2]) for m in tiny_models())
    # relative to how far the weights moved, in L2: Adam turns the rounding of near-zero gradients (embedding rows
    # of tokens seen once) into element-wise differences up to 7% of the largest step at XLA's lowest -O level
    for pad, pack, start in ((actor_pad, actor_pack, actor0), (critic_pad, critic_pack, critic0)):
        assert _flat_norm(pack, pad) < 2e-3 * _flat_norm(pad, start)
    for key in ("actor/pg_loss", "actor/entropy", "critic/vf_loss", "critic/score_mean"):
        assert m_pack[key] == pytest.approx(m_pad[key], rel=1e-4, abs=1e-6), key



def test_packed_forwards_before_the_update_equal_the_padded_ones():
    traj = random_trajectories(rows=8, real_rows=7, seed=2)
    actor, critic = tiny_models()
    trainer = PPOTrainer(actor, critic, ppo_config(pack_updates=True), ACTOR_OPTIM, CRITIC_OPTIM, seed=0)
    state = trainer.init_state()
    _, whole = trainer._pack_plans(traj, iteration=0)
    assert whole.row.shape[:2] == (1, 1) and whole.row.shape[2] * whole.row.shape[3] < 7  # < 7 episodes
    scores = trainer.shard_batch(jnp.asarray(SCORES))
    with jax.set_mesh(trainer.mesh):
        padded, _, _ = trainer._prepare(state, trainer.shard_batch(traj), scores, None)
        packed, _, _ = trainer._prepare(state, trainer.shard_batch(traj), scores, None, trainer._replicate(whole))
    for field in ("old_logp", "ref_logp", "values", "advantages", "returns"):
        a, b = np.asarray(getattr(padded, field)), np.asarray(getattr(packed, field))
        assert np.abs(a).max() > 0, field
        np.testing.assert_allclose(b, a, atol=2e-5, rtol=1e-5, err_msg=field)
