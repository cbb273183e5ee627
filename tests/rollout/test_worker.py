"""The multi-turn worker: scripted policies for exact control flow, the real engine end to end, masks, timing."""
import asyncio
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rr1_jax.generate.sampling import SamplingParams, behaviour_log_probs
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import abstract_model, forward
from rr1_jax.rl.rewards import format_reward
from rr1_jax.rollout.policy import ScriptedPolicy, engine_policy
from rr1_jax.rollout.pool import PoolClient, PoolConfig
from rr1_jax.rollout.prompts import render_prompt
from rr1_jax.rollout.simulated_pool import SimulatedPoolConfig, SimulatedPoolServer, simulated_candidate_pool
from rr1_jax.rollout.waves import rollout_in_waves
from rr1_jax.rollout.worker import RolloutConfig, rollout

CLIENT = PoolConfig(require_keys=False, attempt_timeout_s=5.0, deadline_s=20.0)
SHORT_TEMPLATE = "Answer with routes. Question: {question}\n"


def run_rollout(task, policy, tokenizer, prompts, config, server_config=SimulatedPoolConfig(latency_scale=0),
                client_config=CLIENT, seed=0, server=None):
    """Start a simulated server, roll out, return (result, server)."""
    server = server or SimulatedPoolServer(task.table, config=server_config)

    async def go():
        async with server as url:
            async with PoolClient(simulated_candidate_pool(url), client_config) as client:
                return await rollout(policy, client, tokenizer, prompts, config, seed)

    return asyncio.run(go()), server


def encode(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def check_masks(result, tokenizer):
    """Observation tokens: attention 1, loss 0, decode to whole <information> blocks; policy tokens: loss 1."""
    traj = result.trajectories
    p = traj.prompt_width
    for i, episode in enumerate(result.episodes):
        resp_len = int(np.asarray(traj.response_mask[i]).sum())
        tokens = np.asarray(traj.tokens[i, p:p + resp_len])
        loss = np.asarray(traj.loss_mask[i, :resp_len])
        assert np.asarray(traj.attention_mask[i, p:p + resp_len]).all()
        assert not np.asarray(traj.loss_mask[i, resp_len:]).any()
        observation_text = tokenizer.decode(tokens[~loss].tolist())
        expected = "".join(f"\n\n<information>{r.response.strip() if r.response else 'None'}</information>\n\n"
                           for r in episode.routes if not r.truncated)
        if not any(r.truncated for r in episode.routes):
            assert observation_text == expected
        assert np.all(np.asarray(traj.old_logprobs[i])[~np.asarray(traj.loss_mask[i])] == 0)


def scripts_for(tokenizer, route_query):
    route = f"<think>need help</think><search> Qwen2.5-7B-Instruct: {route_query} </search>"
    answer = "<think>done</think><answer> 42 </answer>"
    t = lambda s: encode(tokenizer, s)  # noqa: E731
    return [
        [t(route), t(answer)],  # routes once, then answers
        [t(route)] * 6,  # routes in every generation: 4 executed, the 5th unanswered
        [t("<think>hmm</think>"), t(answer)],  # invalid (no action): nothing appended, continues
        [t(answer)],  # answers at once
    ], t(route), t(answer)


@pytest.mark.parametrize("mode, reprefill", [("async", False), ("sync", False), ("sync", True)])
def test_scripted_control_flow_and_masks(task, tokenizer, route_query, mode, reprefill):
    scripts, route, answer = scripts_for(tokenizer, route_query)
    prompts = [render_prompt(tokenizer, q.question, SHORT_TEMPLATE) for q in task.train[:4]]
    policy = ScriptedPolicy(scripts, eos_ids=[tokenizer.eos_token_id])
    config = RolloutConfig(max_turns=4, segment_steps=16, mode=mode, reprefill=reprefill)
    result, server = run_rollout(task, policy, tokenizer, prompts, config)
    e = result.episodes
    assert [x.actions for x in e] == [["route", "answer"], ["route"] * 4 + ["route-unanswered"],
                                      ["no-action", "answer"], ["answer"]]
    assert [x.num_routes for x in e] == [1, 4, 0, 0] and [x.finished for x in e] == [
        "answer", "turn-limit", "answer", "answer"]
    assert e[0].routes[0].candidate == "Qwen2.5-7B-Instruct" and e[0].routes[0].query == route_query
    # what each slot saw is exactly prompt + response (observations inserted where the trajectory has them)
    traj = result.trajectories
    for b in range(4):
        resp = np.asarray(traj.tokens[b, traj.prompt_width:])[np.asarray(traj.response_mask[b])].tolist()
        assert policy.contexts[b] == prompts[b] + resp
    # slot 1 ends on its unanswered route: no observation after the last policy turn
    loss1 = np.asarray(traj.loss_mask[1])[np.asarray(traj.response_mask[1])]
    assert loss1[-len(route):].all() and (~loss1).sum() == sum(r.observation_tokens for r in e[1].routes)
    # slot 2's invalid turn appended nothing: its response is all policy tokens
    assert np.asarray(traj.loss_mask[2]).sum() == np.asarray(traj.response_mask[2]).sum()
    check_masks(result, tokenizer)
    assert np.asarray(traj.old_logprobs)[np.asarray(traj.loss_mask)].tolist() == [-1.0] * int(
        np.asarray(traj.loss_mask).sum())
    ledger = sum(x.completion_tokens for x in server.ledger.values())
    assert sum(r.completion_tokens for x in e for r in x.routes) == ledger and server.requests == 5
    assert sum(x.cost for x in e) == pytest.approx(server.total_cost(), rel=1e-12)
    assert e[1].response_text.count("<information>") == 4


def test_batch_where_no_slot_routes(task, tokenizer):
    """Upstream issue #3: a turn (here: a whole batch) without any route must work."""
    answer, think = encode(tokenizer, "<answer> x </answer>"), encode(tokenizer, "<think>a</think>")
    policy = ScriptedPolicy([[answer], [think, think, answer], [think] * 3 + [encode(tokenizer, "ok")]])
    prompts = [encode(tokenizer, "question?")] * 3
    result, server = run_rollout(task, policy, tokenizer, prompts, RolloutConfig(max_turns=2, mode="sync"))
    assert server.requests == 0 and all(x.num_routes == 0 for x in result.episodes)
    assert [x.num_generations for x in result.episodes] == [1, 3, 3]
    assert result.episodes[2].finished == "turn-limit" and np.asarray(result.trajectories.row_valid).all()


def test_reward_text_ends_at_the_answer_as_upstreams_cut(task, tokenizer):
    """The id completing `</answer>` may carry more bytes (`>.`): they stay in the trained ids (generate/stops.py),
    but the text the rewards read ends at `</answer>`, as upstream's cut turn text does (format 0, not -1)."""
    answer = encode(tokenizer, "<think>done</think><answer> 42 </answer>.")
    result, _ = run_rollout(task, ScriptedPolicy([[answer]]), tokenizer, [encode(tokenizer, "q?")],
                            RolloutConfig(max_turns=1))
    episode = result.episodes[0]
    assert episode.finished == "answer" and episode.response_text == "<think>done</think><answer> 42 </answer>"
    assert format_reward(episode.response_text) == 0.0
    assert int(np.asarray(result.trajectories.loss_mask[0]).sum()) == len(answer)  # "." is still a trained id


def test_a_response_keeps_its_first_max_response_tokens_as_upstreams_right_side(task, tokenizer, route_query):
    """Upstream keeps the first max_prompt_length = 4096 response columns: what follows is neither trained nor
    read by the rewards (an answer past the cut scores format -1), but every executed call counts in the cost."""
    scripts, route, answer = scripts_for(tokenizer, route_query)
    prompts = [encode(tokenizer, "q1?"), encode(tokenizer, "q2?")]
    whole, _ = run_rollout(task, ScriptedPolicy([scripts[0], scripts[3]]), tokenizer, prompts,
                           RolloutConfig(max_turns=2))
    cap = len(route) + 5  # inside slot 0's observation; slot 1's lone answer is shorter
    cut, server = run_rollout(task, ScriptedPolicy([scripts[0], scripts[3]]), tokenizer, prompts,
                              RolloutConfig(max_turns=2, max_response_tokens=cap))
    t, w = cut.trajectories, whole.trajectories
    assert t.response_width == cap and [e.response_cut for e in cut.episodes] == [True, False]
    for name in ("tokens", "attention_mask"):  # slot 0: the whole run's first columns; slot 1 unchanged
        a, b = np.asarray(getattr(t, name)), np.asarray(getattr(w, name))
        assert (a[0, :t.prompt_width + cap] == b[0, :t.prompt_width + cap]).all()
        assert (a[1, :t.prompt_width + cap] == b[1, :t.prompt_width + cap]).all()
    for name in ("loss_mask", "response_mask", "old_logprobs"):
        assert (np.asarray(getattr(t, name))[:, :cap] == np.asarray(getattr(w, name))[:, :cap]).all()
    assert int(np.asarray(t.response_mask[0]).sum()) == cap
    first = cut.episodes[0]
    assert first.response_text == tokenizer.decode(
        np.asarray(t.tokens[0, t.prompt_width:t.prompt_width + cap]).tolist(), skip_special_tokens=True)
    assert "<answer>" not in first.response_text and format_reward(first.response_text) == -1.0
    assert first.cost == whole.episodes[0].cost == pytest.approx(server.total_cost()) and server.requests == 1
    assert cut.episodes[1].response_text == whole.episodes[1].response_text


def test_truncation_invalid_observation_and_budget(task, tokenizer, route_query):
    scripts, route, answer = scripts_for(tokenizer, route_query)
    policy = ScriptedPolicy([scripts[1], scripts[2]])
    prompts = [encode(tokenizer, "q1?"), encode(tokenizer, "q2?")]
    config = RolloutConfig(max_turns=3, max_obs_length=12, invalid_observation="\nInvalid, try again.\n",
                           episode_budget=1e-9)
    result, server = run_rollout(task, policy, tokenizer, prompts, config)
    routes = result.episodes[0].routes
    assert [r.observation_tokens for r in routes] == [12] * 3 and all(r.truncated for r in routes)
    assert [r.error for r in routes] == [None, "budget exhausted", "budget exhausted"] and server.requests == 1
    traj = result.trajectories
    first_obs = np.asarray(traj.tokens[0, traj.prompt_width + len(route):][:12]).tolist()
    assert tokenizer.decode(first_obs) == "\n\n<information>"[:12]  # the head is kept
    slot2 = np.asarray(traj.tokens[1, traj.prompt_width:])[~np.asarray(traj.loss_mask[1])
                                                            & np.asarray(traj.response_mask[1])]
    assert tokenizer.decode(slot2.tolist()) == "\nInvalid, try again.\n"


def test_async_overlap_beats_turn_synchronous(task, tokenizer):
    """Slots alternate long and one-token turns: async hides each call behind the other slot's decoding.

    Decode time of a long turn is 3x the call latency T: turn-synchronous takes 4 x (3T + T) = 16T, async about
    2 x 3T + 4T = 10T (a slot's own call cannot overlap its own decoding)."""
    latency = 0.1
    route = [0]  # id 0 decodes to a whole `<search> Qwen2.5-7B-Instruct: … </search>`
    long_route = encode(tokenizer, "<think>" + "x" * 33 + "</think>") + route
    answer = [1]
    scripts = [[long_route, route, long_route, route, answer], [route, long_route, route, long_route, answer]]
    server_config = SimulatedPoolConfig(latency_mean_s=latency, latency_std_s=0.0)
    timings = {}
    for mode in ("async", "sync"):
        policy = ScriptedPolicy(scripts, step_time_s=3 * latency / len(long_route))
        result, _ = run_rollout(task, policy, tokenizer, [[5, 6], [7, 8]],
                                RolloutConfig(max_turns=4, mode=mode, segment_steps=8), server_config)
        timings[mode] = result.timing
        assert [x.num_routes for x in result.episodes] == [4, 4]
    assert timings["async"].wall_s < 0.85 * timings["sync"].wall_s, timings
    assert timings["sync"].hidden_fraction == pytest.approx(0.0, abs=0.05), timings  # sync exposes every call
    assert timings["async"].hidden_fraction > 0.4, timings


# ---------------------------------------------------------------------------------------------------------------
# the real engine
# ---------------------------------------------------------------------------------------------------------------
GREEDY = SamplingParams(greedy=True)


@pytest.fixture(scope="module")
def tiny(tokenizer):
    """(config, graphdef, params): the tiny model with N(0, 0.2) weights, built without running initialisers."""
    config = ModelConfig.tiny(vocab_size=len(tokenizer))
    graphdef, shapes = nnx.split(abstract_model(config), nnx.Param)
    rng = np.random.default_rng(0)
    return config, graphdef, jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.2, x.shape), x.dtype), shapes)


@pytest.fixture(scope="module")
def policy(tiny, tokenizer):
    """One engine policy (4 slots, 3 routed turns, 6 tokens per turn) shared so each program compiles once."""
    config, graphdef, params = tiny
    return engine_policy(graphdef, params, config, tokenizer, num_slots=4, max_turns=3, max_turn_tokens=6,
                         prompt_buckets=[64, 128], obs_buckets=[32, 64], sampling=GREEDY)


def teacher_forced(tiny, params, traj, sampling):
    """Behaviour log-probs of every response token from one full forward over [prompt | response]."""
    config, graphdef, _ = tiny
    tokens, mask = jnp.asarray(traj.tokens), jnp.asarray(traj.attention_mask)
    logits = forward(graphdef, params, tokens, jnp.asarray(traj.positions), mask)  # [N, T, V]
    log_probs = behaviour_log_probs(logits, sampling)
    p = traj.prompt_width
    predicted = np.asarray(log_probs[:, p - 1:-1])  # column t predicts response token t
    response = np.asarray(tokens[:, p:])
    return np.take_along_axis(predicted, response[..., None], axis=-1)[..., 0]  # [N, R]


def test_engine_rollout_logprobs_masks_and_schedules_agree(task, tokenizer, tiny, policy):
    policy.params = tiny[2]
    prompts = [render_prompt(tokenizer, q.question, SHORT_TEMPLATE) for q in task.train[:3]]
    results = {}
    for mode, reprefill in (("async", False), ("sync", False), ("sync", True)):
        config = RolloutConfig(max_turns=3, mode=mode, reprefill=reprefill, segment_steps=4)
        results[mode, reprefill], _ = run_rollout(task, policy, tokenizer, prompts, config, seed=5)
    a = results["async", False].trajectories
    for other in (results["sync", False], results["sync", True]):
        for field in ("tokens", "attention_mask", "loss_mask"):
            np.testing.assert_array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(other.trajectories,
                                                                                            field)))
        np.testing.assert_allclose(np.asarray(a.old_logprobs), np.asarray(other.trajectories.old_logprobs),
                                   atol=1e-5)
    assert not np.asarray(a.row_valid)[3] and not np.asarray(a.attention_mask[3]).any()  # idle 4th slot
    check_masks(results["async", False], tokenizer)
    reference = teacher_forced(tiny, tiny[2], a, GREEDY)
    loss = np.asarray(a.loss_mask)
    np.testing.assert_allclose(np.asarray(a.old_logprobs)[loss], reference[loss], atol=2e-4)
    for episode in results["async", False].episodes:  # random weights never route: the no-route batch of issue #3
        assert episode.actions == ["no-action"] * 4 and episode.num_routes == 0 and episode.finished == "turn-limit"
        assert episode.stop_reasons == ["BUDGET"] * 4


def test_engine_always_routing_model_turn_limit_and_cache(task, tokenizer, tiny, policy, tmp_path):
    """All-equal logits make greedy decoding emit id 0, a whole `<search> Qwen…</search>`, every generation."""
    params = jax.tree.map(lambda x: x, tiny[2])
    params["final_norm"] = jax.tree.map(jnp.zeros_like, tiny[2]["final_norm"])
    policy.params = params
    prompts = [render_prompt(tokenizer, q.question, SHORT_TEMPLATE) for q in task.train[:2]]
    rollout_config = RolloutConfig(max_turns=3, max_obs_length=64, segment_steps=4)
    server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_scale=0))
    runs = []
    for cache in (None, tmp_path / "cache.sqlite", tmp_path / "cache.sqlite"):
        client = PoolConfig(require_keys=False, cache_path=None if cache is None else str(cache))
        result, _ = run_rollout(task, policy, tokenizer, prompts, rollout_config, client_config=client,
                                server=server)
        runs.append((result, server.requests))
    result = runs[0][0]
    for episode in result.episodes:
        assert episode.actions == ["route"] * 3 + ["route-unanswered"] and episode.finished == "turn-limit"
        assert [r.generation for r in episode.routes] == [1, 2, 3] and all(r.response for r in episode.routes)
    traj = result.trajectories
    loss = np.asarray(traj.loss_mask[0])[np.asarray(traj.response_mask[0])]
    obs_len = [r.observation_tokens for r in result.episodes[0].routes]
    expected = [True] + [False] * obs_len[0] + [True] + [False] * obs_len[1] + [True] + [False] * obs_len[2] + [True]
    assert loss.tolist() == expected  # four one-token generations, no observation after the last
    np.testing.assert_allclose(np.asarray(traj.old_logprobs)[np.asarray(traj.loss_mask)], -np.log(len(tokenizer)),
                               rtol=1e-5)
    check_masks(result, tokenizer)
    # cache off, cache filling, cache replay: identical trajectories; the replay made no request
    assert runs[1][1] - runs[0][1] == 2 and runs[2][1] == runs[1][1]  # both slots ask the same thing
    for other, _ in runs[1:]:
        for field in ("tokens", "attention_mask", "loss_mask", "old_logprobs"):
            np.testing.assert_array_equal(np.asarray(getattr(other.trajectories, field)),
                                          np.asarray(getattr(traj, field)))
        assert [x.cost for x in other.episodes] == [x.cost for x in result.episodes]
    assert all(r.cached for x in runs[2][0].episodes for r in x.routes)
    # upstream's re-prefill schedule: contexts re-prefilled at power-of-two widths must leave the cache room the
    # append path has (left-aligned, a 278-token context in a 344 bucket left none for the last generation)
    reprefill, _ = run_rollout(task, policy, tokenizer, prompts, dataclasses.replace(rollout_config, mode="sync",
                                                                                    reprefill=True), server=server)
    assert [x.finished for x in reprefill.episodes] == ["turn-limit"] * 2
    for field in ("tokens", "attention_mask", "loss_mask"):
        np.testing.assert_array_equal(np.asarray(getattr(reprefill.trajectories, field)),
                                      np.asarray(getattr(traj, field)))


def test_config_and_input_errors_name_the_fix(task, tokenizer):
    with pytest.raises(ValueError, match="reprefill=True needs mode='sync'"):
        RolloutConfig(mode="async", reprefill=True)
    with pytest.raises(ValueError, match="mode"):
        RolloutConfig(mode="parallel")
    with pytest.raises(ValueError, match="non-empty prompts"):
        run_rollout(task, ScriptedPolicy([[[1]]]), tokenizer, [[5], [6]], RolloutConfig())


def test_a_crashing_route_task_is_reraised_not_lost(tokenizer):
    """Endpoint trouble never raises, but a bug inside a call task must surface instead of hanging the slot."""
    class BrokenClient:
        pool = simulated_candidate_pool("http://127.0.0.1:9/v1")

        async def call(self, candidate, query, budgets=()):
            raise RuntimeError("bug in the client")

    policy = ScriptedPolicy([[[0], [1]]])
    with pytest.raises(RuntimeError, match="bug in the client"):
        asyncio.run(rollout(policy, BrokenClient(), tokenizer, [[5, 6]], RolloutConfig(mode="async")))


def test_waves_sample_what_one_wave_samples(task, tokenizer, tiny):
    """`rollout_in_waves` on a 2-slot engine gives each episode its batch position's sampling key: the rows and
    episodes of one 4-slot wave, in order. The prompt is the same four times, so only the keys tell rows apart."""
    config, graphdef, params = tiny
    engines = {n: engine_policy(graphdef, params, config, tokenizer, num_slots=n, max_turns=2, max_turn_tokens=6,
                                prompt_buckets=[128], obs_buckets=[32], sampling=SamplingParams(temperature=1.0))
               for n in (4, 2)}
    prompts = [render_prompt(tokenizer, task.train[0].question, SHORT_TEMPLATE)] * 4
    rollout_config = RolloutConfig(max_turns=2, segment_steps=4)

    async def go():
        async with SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_scale=0)) as url:
            async with PoolClient(simulated_candidate_pool(url), CLIENT) as client:
                runs = [await rollout_in_waves(engines[n], client, tokenizer, prompts, rollout_config, seed=3,
                                               num_rows=4) for n in (4, 2)]
                # a process with a padding prompt: 3 prompts, slot ids of all 4 positions (multi-host layout)
                return runs + [await rollout_in_waves(engines[4], client, tokenizer, prompts[:3], rollout_config,
                                                      seed=3, num_rows=4, slot_ids=[0, 1, 2, 3])]

    one, waves, short = asyncio.run(go())
    np.testing.assert_array_equal(np.asarray(short.trajectories.tokens)[:3], np.asarray(one.trajectories.tokens)[:3])
    assert np.asarray(short.trajectories.row_valid).tolist() == [True, True, True, False]
    for field in ("tokens", "attention_mask", "positions", "loss_mask", "row_valid"):
        np.testing.assert_array_equal(np.asarray(getattr(one.trajectories, field)),
                                      np.asarray(getattr(waves.trajectories, field)), err_msg=field)
    np.testing.assert_allclose(np.asarray(one.trajectories.old_logprobs), np.asarray(waves.trajectories.old_logprobs),
                               atol=1e-5)
    assert [e.response_text for e in one.episodes] == [e.response_text for e in waves.episodes]
    texts = [e.response_text for e in one.episodes]
    assert texts[:2] != texts[2:]  # positions 2-3 draw other tokens than 0-1: a wave reusing keys would not
