"""The async pool client against the simulated server (loopback): concurrency, faults, costs, cache, budget, keys."""
import asyncio
import collections

import pytest
from aiohttp import web

from rr1_jax.rollout.candidates import Candidate, CandidatePool
from rr1_jax.rollout.pool import Budget, PoolClient, PoolConfig
from rr1_jax.rollout.simulated_pool import (FaultRates, SimulatedPoolConfig, SimulatedPoolServer,
                                            simulated_candidate_pool)

FAST = dict(require_keys=False, attempt_timeout_s=2.0, deadline_s=10.0, backoff_initial_s=0.005,
            backoff_max_s=0.02)


def queries(task, n):
    return [f"What is the capital of {c}?" for c in sorted(task.table.capital_of)][:n] + \
        [f"Who founded {c}?" for c in sorted(task.table.founder_of)][:max(0, n - len(task.table.capital_of))]


async def route_all(url, calls, config, budgets=()):
    """calls: [(candidate name, query)] -> results in order, all issued concurrently."""
    pool = simulated_candidate_pool(url)
    async with PoolClient(pool, config) as client:
        results = await asyncio.gather(*(client.call(pool.resolve(n), q, budgets) for n, q in calls))
        return results, client.stats, [client.observation(r) for r in results]


def serve(task, faults=FaultRates(), **kw):
    kw.setdefault("latency_scale", 0.0)
    return SimulatedPoolServer(task.table, config=SimulatedPoolConfig(seed=1, faults=faults, **kw))


def assert_costs_match_ledger(results, server):
    tokens = collections.Counter()
    for r in results:
        if r.ok and not r.cached:
            tokens[r.model_id] += r.completion_tokens
    assert tokens == collections.Counter({m: e.completion_tokens for m, e in server.ledger.items()
                                          if e.completion_tokens})
    assert sum(r.cost for r in results if not r.cached) == pytest.approx(server.total_cost(), rel=1e-12)


def test_concurrency_limit_and_exact_costs(task):
    names = simulated_candidate_pool("x").names
    calls = [(names[i % 6], q) for i, q in enumerate(queries(task, 12))]
    server = serve(task, latency_mean_s=0.05, latency_std_s=0.0, latency_scale=1.0)

    async def run():
        async with server as url:
            return await route_all(url, calls, PoolConfig(max_concurrency=3, **FAST))

    results, stats, observations = asyncio.run(run())
    assert all(r.ok and r.attempts == 1 for r in results)
    assert stats.max_in_flight == 3 and server.max_in_progress == 3
    assert_costs_match_ledger(results, server)
    assert stats.billed_cost == pytest.approx(server.total_cost(), rel=1e-12)
    for r, obs in zip(results, observations):
        assert obs == "\n\n<information>" + r.content.strip() + "</information>\n\n"
        assert r.cost == r.completion_tokens * simulated_candidate_pool("x").resolve(r.candidate).output_price_per_1m


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "timeout", "malformed", "drop"])
def test_each_fault_class_is_retried_or_becomes_the_failure_observation(task, kind):
    faults = FaultRates(**{kind: 0.5}, retry_after_s=0.01, timeout_sleep_s=0.5)
    config = PoolConfig(max_concurrency=8, **dict(FAST, attempt_timeout_s=0.15), max_attempts=3)
    calls = [("Qwen2.5-7B-Instruct", q) for q in queries(task, 10)]
    server = serve(task, faults)

    async def run():
        async with server as url:
            return await route_all(url, calls, config)

    results, stats, observations = asyncio.run(run())
    retried = [r for r in results if r.ok and r.attempts > 1]
    failed = [r for r in results if not r.ok]
    assert retried, "with a 50% fault rate some calls must succeed on a retry"
    assert sum(server.ledger["qwen/qwen2.5-7b-instruct"].faults.values()) == stats.http_attempts - sum(
        r.ok for r in results)
    for r, obs in zip(results, observations):
        assert r.ok or (obs == "\n\n<information>None</information>\n\n" and r.cost == 0 and r.attempts == 3)
    assert all(r.error for r in failed)
    assert_costs_match_ledger(results, server)


def test_retry_after_is_honoured_and_failure_text_configurable(task):
    config = PoolConfig(max_attempts=2, failure_text="API Request Error", **FAST)
    server = serve(task, FaultRates(rate_limit=1.0, retry_after_s=0.3))

    async def run():
        async with server as url:
            return await route_all(url, [("Mistral-7B-Instruct", "What is the capital of X?")], config)

    (result,), stats, (obs,) = asyncio.run(run())
    assert not result.ok and result.error == "HTTP 429" and result.attempts == 2
    assert result.latency_s >= 0.3  # waited Retry-After, not the 5 ms backoff
    assert obs == "\n\n<information>API Request Error</information>\n\n"


def test_deadline_bounds_a_call(task):
    config = PoolConfig(**dict(FAST, attempt_timeout_s=0.1, deadline_s=0.25), max_attempts=50)
    server = serve(task, FaultRates(timeout=1.0, timeout_sleep_s=1.0))

    async def run():
        async with server as url:
            return await route_all(url, [("Qwen2.5-7B-Instruct", "What is the capital of X?")], config)

    (result,), _, _ = asyncio.run(run())
    assert not result.ok and "deadline" in result.error and result.latency_s < 0.6


def test_cache_rerun_is_free_and_identical(task, tmp_path):
    names = simulated_candidate_pool("x").names
    calls = [(names[i % 6], q) for i, q in enumerate(queries(task, 8))]
    config = PoolConfig(cache_path=str(tmp_path / "replies.sqlite"), **FAST)
    server = serve(task)

    async def run():
        async with server as url:
            first = await route_all(url, calls, config)
            requests, cost = server.requests, server.total_cost()
            second = await route_all(url, calls, config)
            return first, second, requests, cost

    (first, s1, _), (second, s2, _), requests, cost = asyncio.run(run())
    assert server.requests == requests and server.total_cost() == cost  # nothing reached the server
    assert s2.cache_hits == len(calls) and s2.billed_cost == 0 and s1.billed_cost == pytest.approx(cost)
    strip = lambda r: (r.content, r.completion_tokens, r.prompt_tokens, r.cost, r.dollars)  # noqa: E731
    assert [strip(r) for r in first] == [strip(r) for r in second]
    assert all(r.cached for r in second) and not any(r.cached for r in first)


def test_budget_refuses_calls_once_spent(task):
    budget = Budget(limit=1e-9)  # any reply exhausts it
    server = serve(task)

    async def run():
        async with server as url:
            pool = simulated_candidate_pool(url)
            async with PoolClient(pool, PoolConfig(**FAST)) as client:
                out = []
                for q in queries(task, 3):
                    r = await client.call(pool.resolve("Qwen2.5-7B-Instruct"), q, [budget])
                    out.append((r, client.observation(r)))
                unknown = await client.call(None, "q", [budget])
                return out, unknown, client.observation(unknown)

    out, unknown, unknown_obs = asyncio.run(run())
    assert out[0][0].ok and not out[1][0].ok and out[1][0].error == "budget exhausted"
    assert "budget exhausted" in out[2][1].lower() and out[2][0].cost == 0
    assert server.ledger["qwen/qwen2.5-7b-instruct"].calls == 1 and budget.spent == out[0][0].cost
    assert unknown.error == "unknown model name" and unknown_obs == "\n\n<information>None</information>\n\n"


AUTH = web.AppKey("auth", list)


def odd_endpoint_pool(url, env):
    make = lambda name: Candidate(name, name, url, env, 2.0, 1.0, description=name)  # noqa: E731
    return CandidatePool([make("null-content"), make("no-usage"), make("auth"), make("bad-request")])


async def odd_endpoint(request):
    """Replies the simulated server never sends: content null, no usage, 401, 400; records the auth header."""
    body = await request.json()
    request.app[AUTH].append(request.headers.get("Authorization"))
    model = body["model"]
    if model == "null-content":
        return web.json_response({"choices": [{"message": {"content": None}}], "usage": {"completion_tokens": 7}})
    if model == "no-usage":
        return web.json_response({"choices": [{"message": {"content": " hi "}}]})
    if model == "auth":
        return web.json_response({"error": "bad key"}, status=401)
    return web.json_response({"error": "bad request"}, status=400)


def test_odd_replies_and_api_keys(monkeypatch):
    secret = "sk-test-SECRET-123"
    env = "RR1_TEST_POOL_KEY"

    async def run():
        app = web.Application()
        app[AUTH] = []
        app.router.add_post("/v1/chat/completions", odd_endpoint)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
        pool = odd_endpoint_pool(url, env)
        try:
            monkeypatch.delenv(env, raising=False)
            with pytest.raises(ValueError, match=env):
                async with PoolClient(pool, PoolConfig(require_keys=True)):
                    pass
            monkeypatch.setenv(env, secret)
            async with PoolClient(pool, PoolConfig(max_attempts=2, backoff_initial_s=0.0)) as client:
                results = [await client.call(c, "q") for c in pool]
        finally:
            await runner.cleanup()
        return results, app[AUTH]

    (null, no_usage, auth, bad), headers = asyncio.run(run())
    assert headers == [f"Bearer {secret}"] * 4  # sent, and fatal statuses were not retried
    assert not null.ok and "content: null" in null.error and null.cost == 7 * 2.0
    assert no_usage.ok and no_usage.content == " hi " and no_usage.usage_missing and no_usage.cost == 0
    assert not auth.ok and env in auth.error and not bad.ok and bad.error.startswith("HTTP 400")
    assert all(secret not in repr(r) for r in (null, no_usage, auth, bad))
