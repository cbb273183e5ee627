"""One PPO iteration end to end (GAE and GRPO), upstream step order, exact mini-batch accumulation, lr schedule."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr1_jax.generate.compile_count import count_compilations
from rr1_jax.rl import algos
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig, ppo_config_from
from rr1_jax.rl.train_state import gradient_transform, learning_rate
from rr1_jax.rl.updates import PPOBatch, accumulate_gradients, run_epochs
from tests.rl.ppo_fixtures import (ACTOR_OPTIM, SCORES, gae_trainer, grpo_trainer, max_abs_diff, params_copy,
                                   ppo_config, random_trajectories, tiny_models)

ACTOR_METRICS = ("actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/entropy", "actor/grad_norm", "actor/lr")
CRITIC_METRICS = ("critic/vf_loss", "critic/vf_clipfrac", "critic/grad_norm", "critic/lr", "critic/values_mean",
                  "critic/advantages_mean", "critic/returns_mean", "critic/kl", "critic/kl_coef")


def _all_finite(metrics):
    return all(math.isfinite(v) for v in metrics.values())


@pytest.mark.slow
def test_gae_iterations_follow_upstream_order_and_compile_once():
    trainer = gae_trainer()  # critic_warmup=1
    traj = random_trajectories()
    state = trainer.init_state()
    actor0, critic0, ref0 = params_copy(state.actor), params_copy(state.critic), params_copy(state.ref)

    state, first = trainer.ppo_iteration(state, traj, SCORES)
    assert max_abs_diff(state.actor, actor0) == 0.0, "actor must not move during critic warmup"
    assert max_abs_diff(state.critic, critic0) > 0.0
    assert first["actor/updated"] == 0.0 and "actor/pg_loss" not in first
    assert all(k in first for k in CRITIC_METRICS) and _all_finite(first)
    assert int(state.step) == 1 and int(state.critic_updates) == 1 and int(state.actor_updates) == 0

    state, second = trainer.ppo_iteration(state, traj, SCORES)
    assert max_abs_diff(state.actor, actor0) > 0.0
    assert max_abs_diff(state.ref, ref0) == 0.0, "the reference policy is frozen"
    assert all(k in second for k in ACTOR_METRICS + CRITIC_METRICS) and _all_finite(second)
    assert second["actor/lr"] == pytest.approx(1e-3) and second["critic/lr"] == pytest.approx(1e-3)
    # π_old is recomputed with the actor before its first update, so it still equals the reference here
    assert second["critic/kl"] == 0.0 and second["critic/kl_coef"] == pytest.approx(1e-3)

    with count_compilations() as compiled:
        state, third = trainer.ppo_iteration(state, random_trajectories(seed=5), SCORES)
    assert compiled.count == 0, f"a steady-state iteration compiled {compiled.count} programs"
    assert _all_finite(third) and int(state.step) == 3
    assert third["critic/kl"] != 0.0  # the actor has moved away from the reference: in-reward KL is active
    assert third["critic/rewards_mean"] != pytest.approx(third["critic/score_mean"], abs=1e-9)


@pytest.mark.slow
def test_grpo_iteration_without_critic():
    trainer = grpo_trainer()
    traj = random_trajectories()
    groups = np.array([0, 0, 1, 1, 2, 2, 0, 0], np.int32)  # dummy rows are excluded whatever their id
    state = trainer.init_state()
    assert state.critic is None and state.critic_opt is None
    actor0 = params_copy(state.actor)
    state, metrics = trainer.ppo_iteration(state, traj, SCORES, groups)
    assert max_abs_diff(state.actor, actor0) > 0.0
    assert "actor/kl_loss" in metrics and "critic/vf_loss" not in metrics and _all_finite(metrics)
    assert metrics["critic/kl"] == 0.0  # KL is a loss term under GRPO, not a reward term
    with count_compilations() as compiled:
        state, metrics = trainer.ppo_iteration(state, traj, SCORES, groups)
    assert compiled.count == 0 and _all_finite(metrics)
    with pytest.raises(ValueError, match="group_ids"):
        trainer.ppo_iteration(state, traj, SCORES)


@pytest.mark.slow
def test_reference_refresh_moves_the_kl_anchor_to_the_actor():
    from rr1_jax.rl.trainer import PPOTrainer

    actor, _ = tiny_models(with_critic=False)
    trainer = PPOTrainer(actor, None, ppo_config(adv_estimator="grpo", ref_refresh_every=2), ACTOR_OPTIM, seed=0)
    traj, groups = random_trajectories(), np.array([0, 0, 1, 1, 2, 2, 0, 0], np.int32)
    state = trainer.init_state()
    ref0 = params_copy(state.ref)
    state, _ = trainer.ppo_iteration(state, traj, SCORES, groups)
    assert max_abs_diff(state.ref, ref0) == 0.0, "no refresh before iteration 2"
    state, _ = trainer.ppo_iteration(state, traj, SCORES, groups)
    assert max_abs_diff(state.ref, ref0) > 0.0 and max_abs_diff(state.ref, state.actor) == 0.0
    refreshed = params_copy(state.ref)
    with count_compilations() as compiled:
        state, metrics = trainer.ppo_iteration(state, traj, SCORES, groups)
    assert compiled.count == 0 and _all_finite(metrics) and metrics["actor/kl_loss"] > 0.0
    assert max_abs_diff(state.ref, refreshed) == 0.0 and max_abs_diff(state.actor, refreshed) > 0.0
    with pytest.raises(ValueError, match="ref_refresh_every"):
        PPOConfig(ref_refresh_every=-1)


# ------------------------------------------------------------------------------------------------ accumulation

VOCAB, WIDTH = 16, 12


def _linear_batch(lengths, seed=0) -> PPOBatch:
    """A PPOBatch over a toy linear policy; `lengths` policy tokens per row (very unequal on purpose)."""
    rng = np.random.default_rng(seed)
    n = len(lengths)
    mask = np.arange(WIDTH)[None, :] < np.asarray(lengths)[:, None]
    tokens = rng.integers(0, VOCAB, (n, WIDTH + 1)).astype(np.int32)
    zeros = np.zeros((n, WIDTH), np.float32)
    return PPOBatch(tokens=tokens, attention_mask=np.ones((n, WIDTH + 1), bool),
                    positions=np.zeros((n, WIDTH + 1), np.int32), policy_mask=mask, value_mask=mask,
                    old_logp=(-rng.random((n, WIDTH)) * 3).astype(np.float32), ref_logp=zeros,
                    values=zeros, advantages=rng.normal(size=(n, WIDTH)).astype(np.float32), returns=zeros,
                    prompt_width=1)


def _linear_loss_sums(params, micro: PPOBatch):
    """PPO clip loss of a bigram policy logits = W[previous token]: same (sum, count) contract as the actor."""
    logits = params["w"][micro.tokens[:, :-1]]  # [B, R, V]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), micro.tokens[:, 1:, None], -1)[..., 0]
    _, aux = algos.policy_loss(logp, micro.old_logp, micro.advantages, micro.policy_mask)
    return aux["loss_sum"], {"count": aux["count"], "pg_loss": aux["loss_sum"]}


def test_micro_batch_accumulation_is_an_exact_token_mean():
    lengths = [12, 1, 1, 2, 11, 12, 1, 3]
    batch = _linear_batch(lengths)
    params = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(VOCAB, VOCAB)), jnp.float32)}

    @functools.partial(jax.jit, static_argnums=0)
    def grads_with(micro):
        split = jax.tree.map(lambda x: x.reshape((-1, micro) + x.shape[1:]), batch)
        return accumulate_gradients(_linear_loss_sums, params, split)[0]["w"]

    @jax.jit
    def naive_mean_of_means():  # what a per-micro-batch token mean averaged over micro-batches would give
        def micro_mean(p, i):
            total, aux = _linear_loss_sums(p, jax.tree.map(lambda x: x[i:i + 2], batch))
            return total / aux["count"]
        return sum(jax.grad(micro_mean)(params, i)["w"] for i in range(0, 8, 2)) / 4

    whole = jax.jit(jax.grad(lambda p: _linear_loss_sums(p, batch)[0] / sum(lengths)))(params)["w"]
    for micro in (8, 4, 2, 1):
        np.testing.assert_allclose(np.asarray(grads_with(micro)), np.asarray(whole), atol=1e-6)
    # the test can fail: a naive accumulation gives a clearly different gradient on this batch
    assert np.max(np.abs(np.asarray(naive_mean_of_means()) - np.asarray(whole))) > 1e-3


def test_run_epochs_same_update_for_any_micro_split():
    batch = _linear_batch([12, 1, 1, 2, 11, 12, 1, 3], seed=2)
    params = {"w": jnp.asarray(np.random.default_rng(3).normal(size=(VOCAB, VOCAB)), jnp.float32)}
    optim = OptimConfig(lr=0.1)
    results = []
    for micro in (4, 2, 1):
        cfg = PPOConfig(mini_batch_size=4, micro_batch_size=micro, shuffle=True)
        opt_state = gradient_transform(optim).init(params)
        rng = jax.random.key_data(jax.random.key(0))
        new, _, metrics = run_epochs(params, opt_state, batch, rng, _linear_loss_sums, optim, jnp.float32(0.1), cfg)
        results.append((new, metrics))
    for new, metrics in results[1:]:
        assert max_abs_diff(new, results[0][0]) < 1e-6
        assert abs(float(metrics["pg_loss"]) - float(results[0][1]["pg_loss"])) < 1e-6
    assert max_abs_diff(results[0][0], params) > 1e-3  # two optimizer steps moved the weights



def test_run_epochs_skips_a_mini_batch_of_padding_rows():
    """A short last batch leaves whole mini-batches of padding rows: no AdamW step (momentum, weight decay) on them,
    and their zero losses stay out of the metrics — the update equals the one over the real rows alone."""
    real = _linear_batch([12, 1, 1, 2], seed=4)
    padded = jax.tree.map(lambda x: np.concatenate([x, x]) if np.ndim(x) else x, real)
    padded = padded.replace(policy_mask=np.concatenate([real.policy_mask, np.zeros_like(real.policy_mask)]))
    params = {"w": jnp.asarray(np.random.default_rng(5).normal(size=(VOCAB, VOCAB)), jnp.float32)}
    optim = OptimConfig(lr=0.1, weight_decay=0.01)
    cfg = PPOConfig(mini_batch_size=4, micro_batch_size=4, ppo_epochs=2)
    rng = jax.random.key_data(jax.random.key(0))
    updates = [run_epochs(params, gradient_transform(optim).init(params), batch, rng, _linear_loss_sums, optim,
                          jnp.float32(0.1), cfg) for batch in (real, padded)]
    (alone, _, alone_metrics), (with_padding, _, padded_metrics) = updates
    assert max_abs_diff(alone, params) > 1e-3  # the real rows did move the weights
    assert max_abs_diff(with_padding, alone) < 1e-7
    assert float(padded_metrics["pg_loss"]) == pytest.approx(float(alone_metrics["pg_loss"]), abs=1e-7)

# ------------------------------------------------------------------------------------------------ config

def test_learning_rate_schedule_per_iteration():
    constant = OptimConfig(lr=1e-6)
    assert [float(learning_rate(constant, k)) for k in (0, 1, 5)] == pytest.approx([1e-6] * 3)
    warm = OptimConfig(lr=1.0, warmup_steps=4)
    assert [float(learning_rate(warm, k)) for k in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    quirk = OptimConfig(lr=1.0, warmup_steps=0, upstream_zero_first_lr=True)  # verl's LambdaLR: 0 on step 1
    assert [float(learning_rate(quirk, k)) for k in range(3)] == pytest.approx([0.0, 1.0, 1.0])


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_config_from({"clip_eps": 0.2})
    with pytest.raises(ValueError, match="adv_estimator"):
        PPOConfig(adv_estimator="rloo")
    with pytest.raises(ValueError, match="micro_batch_size"):
        PPOConfig(mini_batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError, match="state_masking=True"):
        PPOConfig(recompute_old_logprobs=False, state_masking=False)
    assert PPOConfig(adv_estimator="grpo").kl_in_loss and not PPOConfig().kl_in_loss
    trainer = gae_trainer()
    with pytest.raises(ValueError, match="mini_batch_size"):
        trainer.ppo_iteration(trainer.init_state(), random_trajectories(rows=6), SCORES[:6])
