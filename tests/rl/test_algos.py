"""PPO/GRPO algorithms against independent loop-based NumPy references, properties, and jit compatibility."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rr1_jax.rl import algos

N, R, V = 5, 9, 7
ATOL = 1e-5


# ------------------------------------------------------------------------------------- random masked batches

def random_batch(seed, n=N, r=R):
    """Compacted rows: response tokens 0..L-1 (L may be 0 or R), with observation spans inside them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, r + 1, size=n)
    lengths[0], lengths[1] = r, 0 if n > 2 else lengths[1]
    response = (np.arange(r)[None, :] < lengths[:, None]).astype(np.float32)
    policy = response.copy()
    for i in range(n):
        if lengths[i] >= 4:                              # an observation span strictly inside the response
            start = rng.integers(1, lengths[i] - 2)
            policy[i, start:start + rng.integers(1, 3)] = 0.0
    value_mask = np.concatenate([np.ones((n, 1), np.float32), response[:, :-1]], axis=1)   # shifted by one
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)
    return dict(lengths=lengths, response=response, policy=policy, value_mask=value_mask,
                rewards=f(n, r) * response, values=f(n, r) * value_mask, scores=f(n),
                logp=-np.abs(f(n, r)), old_logp=-np.abs(f(n, r)), ref_logp=-np.abs(f(n, r)),
                adv=f(n, r), returns=f(n, r), old_values=f(n, r), logits=3 * f(n, r, V))


# ------------------------------------------------------------------------------------- NumPy references (loops)

def ref_kl(x, y, kind):
    out = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        a, b = float(x[idx]), float(y[idx])
        if kind == "kl":
            out[idx] = a - b
        elif kind == "abs":
            out[idx] = abs(a - b)
        elif kind == "mse":
            out[idx] = 0.5 * (a - b) ** 2
        else:
            out[idx] = min(10.0, max(-10.0, math.exp(b - a) - (b - a) - 1))
    return out


def ref_whiten(x, mask):
    vals = [x[idx] for idx in np.ndindex(x.shape) if mask[idx] > 0]
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return (x - mean) / math.sqrt(var + 1e-8)


def ref_gae_raw(rewards, values, gamma, lam):
    n, r = rewards.shape
    adv = np.zeros((n, r))
    for i in range(n):
        running = 0.0
        for t in reversed(range(r)):
            next_value = values[i, t + 1] if t + 1 < r else 0.0
            running = rewards[i, t] + gamma * next_value - values[i, t] + gamma * lam * running
            adv[i, t] = running
    return adv


def ref_gae_bridged_raw(rewards, values, policy, gamma, lam):
    """GAE over each row's policy-token subsequence; every other position copies the next policy token's value."""
    n, r = rewards.shape
    adv = np.zeros((n, r))
    for i in range(n):
        steps = [t for t in range(r) if policy[i, t] > 0]
        sub = np.zeros(len(steps))
        running = 0.0
        for k in reversed(range(len(steps))):
            next_value = values[i, steps[k + 1]] if k + 1 < len(steps) else 0.0
            running = rewards[i, steps[k]] + gamma * next_value - values[i, steps[k]] + gamma * lam * running
            sub[k] = running
        for t in range(r):
            later = [k for k, s in enumerate(steps) if s >= t]
            adv[i, t] = sub[later[0]] if later else 0.0
    return adv


def ref_token_rewards(scores, response, old_logp, ref_logp, policy, beta, kind):
    n, r = response.shape
    out = np.zeros((n, r))
    row_kls = []
    for i in range(n):
        length = int(response[i].sum())
        out[i, length - 1] = scores[i]               # python index -1 = last column when length == 0
        kls = [ref_kl(old_logp[i, t:t + 1], ref_logp[i, t:t + 1], kind)[0] for t in range(r) if policy[i, t] > 0]
        for t in range(r):
            if policy[i, t] > 0:
                out[i, t] -= beta * ref_kl(old_logp[i, t:t + 1], ref_logp[i, t:t + 1], kind)[0]
        if kls:
            row_kls.append(sum(kls) / len(kls))
    return out, (sum(row_kls) / len(row_kls) if row_kls else 0.0)


def ref_policy_loss(logp, old_logp, adv, mask, eps):
    total = count = clipped_count = 0.0
    for idx in np.ndindex(logp.shape):
        if mask[idx] > 0:
            ratio = math.exp(logp[idx] - old_logp[idx])
            plain = -adv[idx] * ratio
            clipped = -adv[idx] * min(max(ratio, 1 - eps), 1 + eps)
            total += max(plain, clipped)
            clipped_count += clipped > plain
            count += 1
    return total / count, total, count, clipped_count / count


def ref_value_loss(values, old_values, returns, mask, clip):
    total = count = 0.0
    for idx in np.ndindex(values.shape):
        if mask[idx] > 0:
            v_clip = min(max(values[idx], old_values[idx] - clip), old_values[idx] + clip)
            total += 0.5 * max((values[idx] - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2)
            count += 1
    return total / count, total, count


def ref_entropy(logits):
    out = np.zeros(logits.shape[:-1])
    for idx in np.ndindex(out.shape):
        z = logits[idx].astype(np.float64)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        out[idx] = -sum(pk * math.log(pk) for pk in p if pk > 0)
    return out


def ref_grpo(scores, response, keys, eps, norm_by_std=True):
    groups = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(scores[i])
    out = np.zeros(response.shape)
    for i, key in enumerate(keys):
        members = groups[key]
        mean, std = (0.0, 1.0) if len(members) == 1 else (np.mean(members), np.std(members, ddof=1))
        out[i] = (scores[i] - mean) / (std + eps if norm_by_std else 1.0) * response[i]
    return out


def close(actual, expected, atol=ATOL, msg=""):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), atol=atol, rtol=1e-5,
                               err_msg=msg)


# ------------------------------------------------------------------------------------- compared with references

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("kind", algos.KL_KINDS)
def test_kl_estimators_match_reference(kind):
    b = random_batch(0)
    close(algos.kl_estimate(b["logp"], b["ref_logp"], kind), ref_kl(b["logp"], b["ref_logp"], kind))
    close(algos.kl_estimate(jnp.array([0.0]), jnp.array([-20.0]), "low_var_kl"), [10.0])   # clamped
    with pytest.raises(ValueError, match="KL estimator kind"):
        algos.kl_estimate(b["logp"], b["ref_logp"], "full")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma, lam", [(1.0, 1.0), (0.9, 0.8)])
def test_gae_matches_reference(seed, gamma, lam):
    b = random_batch(seed)
    adv, ret = algos.gae_advantages(b["rewards"], b["values"], b["response"], gamma, lam)
    raw = ref_gae_raw(b["rewards"], b["values"], gamma, lam)
    close(ret, raw + b["values"])
    close(adv, ref_whiten(raw, b["response"]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma, lam", [(1.0, 1.0), (0.95, 0.7)])
def test_bridged_gae_matches_reference(seed, gamma, lam):
    b = random_batch(seed)
    adv, ret = algos.gae_advantages(b["rewards"], b["values"], b["response"], gamma, lam,
                                    bridge_observations=True, policy_mask=b["policy"])
    raw = ref_gae_bridged_raw(b["rewards"], b["values"], b["policy"], gamma, lam)
    close(ret, raw + b["values"])
    close(adv, ref_whiten(raw, b["response"]))
    with pytest.raises(ValueError, match="needs policy_mask"):
        algos.gae_advantages(b["rewards"], b["values"], b["response"], bridge_observations=True)


def test_bridging_skips_observation_tokens_in_the_recursion():
    rewards = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
    values = np.array([[0.5, 2.0, 3.0, 0.25]], np.float32)
    response, policy = np.ones((1, 4), np.float32), np.array([[1, 0, 0, 1]], np.float32)
    plain, _ = algos.gae_advantages(rewards, values, response, 0.9, 1.0, whiten=False)
    bridged, _ = algos.gae_advantages(rewards, values, response, 0.9, 1.0, whiten=False,
                                      bridge_observations=True, policy_mask=policy)
    close(bridged, [[0.9 * 0.25 - 0.5 + 0.9 * 0.75, 0.75, 0.75, 0.75]])
    close(plain[0, 0], 0.9 ** 3 - 0.5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind, beta", [("kl", 0.001), ("low_var_kl", 0.3)])
def test_token_rewards_match_reference(seed, kind, beta):
    b = random_batch(seed)
    rewards, metrics = algos.token_rewards(b["scores"], b["response"], old_logp=b["old_logp"],
                                           ref_logp=b["ref_logp"], policy_mask=b["policy"], kl_coef=beta,
                                           kl_kind=kind)
    expected, expected_kl = ref_token_rewards(b["scores"], b["response"], b["old_logp"], b["ref_logp"],
                                              b["policy"], beta, kind)
    close(rewards, expected)
    close(metrics["kl"], expected_kl)
    plain, _ = algos.token_rewards(b["scores"], b["response"])
    close(plain, ref_token_rewards(b["scores"], b["response"], b["old_logp"], b["ref_logp"], b["policy"], 0.0,
                                   kind)[0])


def test_token_rewards_use_the_last_non_pad_token_of_uncompacted_rows_and_need_all_kl_inputs():
    mask = np.array([[1, 1, 0, 1, 0, 0]], np.float32)
    rewards, _ = algos.token_rewards(np.array([2.0], np.float32), mask)
    close(rewards, [[0, 0, 0, 2.0, 0, 0]])
    with pytest.raises(ValueError, match="old_logp, ref_logp and policy_mask"):
        algos.token_rewards(np.array([2.0], np.float32), mask, old_logp=np.zeros((1, 6), np.float32))


@pytest.mark.parametrize("seed", SEEDS)
def test_policy_loss_matches_reference(seed):
    b = random_batch(seed)
    loss, aux = algos.policy_loss(b["logp"], b["old_logp"], b["adv"], b["policy"], 0.2)
    mean, total, count, clipfrac = ref_policy_loss(b["logp"], b["old_logp"], b["adv"], b["policy"], 0.2)
    close(loss, mean)
    close(aux["loss_sum"], total)
    close(aux["count"], count)
    close(aux["clipfrac"], clipfrac)
    close(aux["approx_kl"], np.sum((b["old_logp"] - b["logp"]) * b["policy"]) / b["policy"].sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_matches_reference(seed):
    b = random_batch(seed)
    loss, aux = algos.value_loss(b["values"], b["old_values"], b["returns"], b["value_mask"], 0.5)
    mean, total, count = ref_value_loss(b["values"], b["old_values"], b["returns"], b["value_mask"], 0.5)
    close(loss, mean)
    close(aux["loss_sum"], total)
    close(aux["count"], count)


def test_loss_sums_accumulate_exactly_over_minibatches():
    b = random_batch(3, n=6)
    whole, _ = algos.policy_loss(b["logp"], b["old_logp"], b["adv"], b["policy"], 0.2)
    parts = [algos.policy_loss(b["logp"][s], b["old_logp"][s], b["adv"][s], b["policy"][s], 0.2)[1]
             for s in (slice(0, 2), slice(2, 6))]
    close(sum(p["loss_sum"] for p in parts) / sum(p["count"] for p in parts), whole)
    empty_loss, empty_aux = algos.value_loss(b["values"], b["old_values"], b["returns"], 0 * b["value_mask"], 0.5)
    assert float(empty_loss) == 0.0 and float(empty_aux["count"]) == 0.0


def test_kl_loss_and_entropy_match_reference():
    b = random_batch(4)
    loss, aux = algos.kl_loss(b["logp"], b["ref_logp"], b["policy"], "low_var_kl")
    per_token = ref_kl(b["logp"], b["ref_logp"], "low_var_kl")
    close(loss, (per_token * b["policy"]).sum() / b["policy"].sum())
    close(aux["count"], b["policy"].sum())
    close(algos.entropy_from_logits(b["logits"]), ref_entropy(b["logits"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_grpo_matches_reference_with_per_prompt_keys(seed):
    b = random_batch(seed, n=8)
    keys = [("nq", 5), ("hotpotqa", 5), ("nq", 5), ("nq", 7), ("hotpotqa", 5), ("nq", 5), ("nq", 9), ("nq", 7)]
    ids, num_groups = algos.dense_group_ids(keys)
    assert num_groups == 4 and ids.tolist() == [0, 1, 0, 2, 1, 0, 3, 2]
    adv, ret = algos.grpo_advantages(b["scores"], b["response"], ids, num_groups + 2)   # spare groups are inert
    close(adv, ref_grpo(b["scores"], b["response"], keys, 1e-6))
    close(ret, adv)
    token_scores = b["scores"][:, None] * np.eye(1, R, R - 1, dtype=np.float32)   # [N, R], summed over R
    close(algos.grpo_advantages(token_scores, b["response"], ids, num_groups)[0], adv)
    equal = algos.grpo_advantages(np.ones(8, np.float32), b["response"], ids, num_groups)[0]
    close(equal[np.array([0, 1, 2, 3, 4, 5, 7])], 0.0)      # equal scores in a group -> zero advantage
    close(equal[6], b["response"][6] / (1 + 1e-6))           # singleton -> raw score
    centred = algos.grpo_advantages(b["scores"], b["response"], ids, num_groups, norm_by_std=False)[0]
    close(centred, ref_grpo(b["scores"], b["response"], keys, 1e-6, norm_by_std=False))  # Dr. GRPO: no 1/σ
    assert np.abs(np.asarray(centred) - np.asarray(adv)).max() > 1e-2


def test_masked_reductions():
    x = np.array([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]], np.float32)
    m = np.array([[1, 1, 0], [1, 1, 0]], np.float32)
    close(algos.masked_sum(x, m), 10.0)
    close(algos.masked_mean(x, m), 2.5)
    close(algos.masked_mean(x, m, axis=1), [1.5, 3.5])
    close(algos.masked_mean(x, 0 * m), 0.0)
    close(algos.masked_var(x, m), np.var([1, 2, 3, 4], ddof=1))
    close(algos.masked_var(x, m, unbiased=False), np.var([1, 2, 3, 4]))
    close(algos.masked_whiten(x, m, shift_mean=False)[0, :2], ref_whiten(x, m)[0, :2] + 2.5)


def test_kl_controllers_update_as_verl():
    fixed = algos.make_kl_controller("fixed", 0.001)
    assert fixed.update(5.0, 64) is fixed
    adaptive = algos.make_kl_controller("adaptive", 0.1, target=0.02, horizon=10000)
    close(adaptive.update(0.03, 64).value, 0.1 * (1 + 0.2 * 64 / 10000))       # error clipped to +0.2
    close(adaptive.update(0.019, 100).value, 0.1 * (1 - 0.05 * 100 / 10000))
    stepped = jax.jit(lambda c, kl: c.update(kl, 64))(adaptive, jnp.float32(0.0))
    close(stepped.value, 0.1 * (1 - 0.2 * 64 / 10000))
    assert isinstance(stepped, algos.AdaptiveKLController)
    with pytest.raises(ValueError, match="target_kl > 0"):
        algos.make_kl_controller("adaptive", 0.1)
    with pytest.raises(ValueError, match="'fixed' or 'adaptive'"):
        algos.make_kl_controller("pid", 0.1)


# ------------------------------------------------------------------------------------- properties

PN, PR = 3, 6
jit_gae = jax.jit(algos.gae_advantages, static_argnames=("bridge_observations", "whiten"))
FLOATS = st.floats(-10, 10, width=32)


def row_masks(lengths):
    return (np.arange(PR)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(FLOATS, min_size=PR, max_size=PR), min_size=2 * PN, max_size=2 * PN),
       st.lists(st.integers(0, PR), min_size=PN, max_size=PN))
def test_gae_with_unit_gamma_lambda_is_return_to_go_minus_value(rows, lengths):
    mask = row_masks(lengths)
    rewards, values = np.asarray(rows[:PN], np.float32) * mask, np.asarray(rows[PN:], np.float32)
    adv, ret = jit_gae(rewards, values, mask, 1.0, 1.0, whiten=False)
    to_go = np.cumsum(rewards[:, ::-1].astype(np.float64), axis=1)[:, ::-1]
    valid = mask > 0
    close(np.asarray(ret)[valid], to_go[valid], atol=1e-4)
    close(np.asarray(adv)[valid], (to_go - values)[valid], atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.lists(FLOATS, min_size=PN * PR, max_size=PN * PR), st.lists(st.integers(0, PR), min_size=PN, max_size=PN))
def test_whitening_has_zero_mean_and_unit_variance_over_the_mask(flat, lengths):
    x, mask = np.asarray(flat, np.float32).reshape(PN, PR), row_masks(lengths)
    valid = mask > 0
    if valid.sum() < 2 or np.var(x[valid].astype(np.float64), ddof=1) < 1e-2:
        return   # degenerate masks/constant inputs: nothing to normalise
    w = np.asarray(jax.jit(algos.masked_whiten)(x, mask), np.float64)[valid]
    assert abs(w.mean()) < 1e-4
    assert abs(w.var(ddof=1) - 1.0) < 1e-3


@settings(max_examples=60, deadline=None)
@given(st.lists(FLOATS, min_size=2 * PN * PR, max_size=2 * PN * PR),
       st.lists(st.integers(0, PR), min_size=PN, max_size=PN), st.sampled_from([(1.0, 1.0), (0.9, 0.6)]))
def test_bridged_gae_equals_plain_gae_without_observations(flat, lengths, gamma_lam):
    mask = row_masks(lengths)
    rewards, values = [np.asarray(flat[k * PN * PR:(k + 1) * PN * PR], np.float32).reshape(PN, PR) * mask
                       for k in range(2)]
    gamma, lam = gamma_lam
    plain = jit_gae(rewards, values, mask, gamma, lam)
    bridged = jit_gae(rewards, values, mask, gamma, lam, bridge_observations=True, policy_mask=mask)
    for p, q in zip(plain, bridged):
        close(q, p, atol=1e-4)


# ------------------------------------------------------------------------------------- jit compatibility

def test_every_function_runs_under_jit_with_static_shapes():
    b = random_batch(5, n=8)
    ids, groups = algos.dense_group_ids([0, 0, 1, 1, 2, 2, 3, 3])
    calls = {
        "masked_sum": (algos.masked_sum, (b["adv"], b["response"]), {}),
        "masked_mean": (algos.masked_mean, (b["adv"], b["response"]), {}),
        "masked_var": (algos.masked_var, (b["adv"], b["response"]), {}),
        "masked_whiten": (algos.masked_whiten, (b["adv"], b["response"]), {}),
        "kl_estimate": (lambda x, y: algos.kl_estimate(x, y, "low_var_kl"), (b["logp"], b["ref_logp"]), {}),
        "last_token_index": (algos.last_token_index, (b["response"],), {}),
        "token_rewards": (lambda s, m, o, r, p, beta: algos.token_rewards(
            s, m, old_logp=o, ref_logp=r, policy_mask=p, kl_coef=beta),
            (b["scores"], b["response"], b["old_logp"], b["ref_logp"], b["policy"], jnp.float32(0.01)), {}),
        "gae": (lambda r, v, m, g, l: algos.gae_advantages(r, v, m, g, l),
                (b["rewards"], b["values"], b["response"], jnp.float32(0.9), jnp.float32(0.8)), {}),
        "gae_bridged": (lambda r, v, m, p: algos.gae_advantages(r, v, m, 0.9, 0.8, bridge_observations=True,
                                                                 policy_mask=p),
                        (b["rewards"], b["values"], b["response"], b["policy"]), {}),
        "grpo": (lambda s, m, i: algos.grpo_advantages(s, m, i, groups), (b["scores"], b["response"], ids), {}),
        "policy_loss": (algos.policy_loss, (b["logp"], b["old_logp"], b["adv"], b["policy"], 0.2), {}),
        "value_loss": (algos.value_loss, (b["values"], b["old_values"], b["returns"], b["value_mask"], 0.5), {}),
        "kl_loss": (algos.kl_loss, (b["logp"], b["ref_logp"], b["policy"]), {}),
        "entropy": (algos.entropy_from_logits, (b["logits"],), {}),
    }
    for name, (fn, args, kwargs) in calls.items():
        eager, jitted = fn(*args, **kwargs), jax.jit(fn)(*args, **kwargs)
        for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
            close(j, e, atol=1e-5, msg=name)
