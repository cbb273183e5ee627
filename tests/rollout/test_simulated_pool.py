"""The simulated OpenAI-compatible pool: replies, usage, ledger, determinism, each fault class, both runners, CLI."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from rr1_jax.data.synthetic_candidates import default_candidates, find_candidate, simulated_reply
from rr1_jax.rollout.prompts import agent_message
from rr1_jax.rollout.simulated_pool import (FaultRates, SimulatedPoolConfig, SimulatedPoolServer,
                                            simulated_candidate_pool)
from rr1_jax.rollout.prompts import PROMPT_TEMPLATE_QWEN, template_for_pool

QWEN = "qwen/qwen2.5-7b-instruct"


def chat_body(model, query):
    return {"model": model, "messages": [{"role": "user", "content": agent_message(query)}], "max_tokens": 512}


async def post(url, body):
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/chat/completions", json=body) as response:
            return response.status, dict(response.headers), await response.read()


def test_reply_usage_and_ledger(task, route_query):
    async def run():
        server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(seed=3, latency_scale=0))
        async with server as url:
            status, _, body = await post(url, chat_body(QWEN, route_query))
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/models") as response:
                    models = [m["id"] for m in (await response.json())["data"]]
            bad = await post(url, {"model": "nope/nope", "messages": [{"role": "user", "content": "x"}]})
            malformed = await post(url, {"messages": 3})
        return server, status, json.loads(body), models, bad[0], malformed[0]

    server, status, data, models, bad, malformed = asyncio.run(run())
    expected = simulated_reply(find_candidate(default_candidates(), QWEN), route_query, task.table, seed=3)
    assert status == 200 and data["choices"][0]["message"]["content"] == expected.text
    assert data["usage"]["completion_tokens"] == expected.completion_tokens
    assert models == [p.model_id for p in default_candidates()]
    assert (bad, malformed) == (404, 400)
    entry = server.ledger[QWEN]
    assert (entry.calls, entry.completion_tokens, entry.cost) == (1, expected.completion_tokens, expected.cost)
    assert server.total_cost() == expected.cost


def test_faults_are_deterministic_and_of_each_kind(task, route_query):
    kinds = {"rate_limit": FaultRates(rate_limit=1.0, retry_after_s=0.25), "server_error": FaultRates(server_error=1),
             "timeout": FaultRates(timeout=1.0, timeout_sleep_s=0.05), "malformed": FaultRates(malformed=1.0)}

    async def one(faults):
        async with SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_scale=0, faults=faults)) as url:
            return await post(url, chat_body(QWEN, route_query))

    status, headers, _ = asyncio.run(one(kinds["rate_limit"]))
    assert status == 429 and headers["Retry-After"] == "0.25"
    assert asyncio.run(one(kinds["server_error"]))[0] == 500
    assert asyncio.run(one(kinds["timeout"]))[0] == 504
    status, _, body = asyncio.run(one(kinds["malformed"]))
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(one(FaultRates(drop=1.0)))

    async def sequence(seed):  # the n-th request for the same message meets the same fault on every server
        server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(seed, 0, faults=FaultRates(
            server_error=0.5)))
        async with server as url:
            return [(await post(url, chat_body(QWEN, route_query)))[0] for _ in range(12)]

    first = asyncio.run(sequence(0))
    assert first == asyncio.run(sequence(0)) and set(first) == {200, 500}
    assert first != asyncio.run(sequence(1))


def test_latency_distribution_is_per_model_and_scaled(task):
    server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_scale=0.5))
    qwen, mixtral = server.profiles[QWEN], server.profiles["mistralai/mixtral-8x22b-instruct-v0.1"]
    qs = [server._latency(qwen, i) for i in range(400)]
    ms = [server._latency(mixtral, i) for i in range(400)]
    assert abs(sum(qs) / 400 - 0.5 * qwen.latency_mean_s) < 0.03
    assert abs(sum(ms) / 400 - 0.5 * mixtral.latency_mean_s) < 0.1 and min(qs) >= 0
    fixed = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_mean_s=0.3, latency_std_s=0.0))
    assert fixed._latency(mixtral, 1) == pytest.approx(0.3)


def test_background_thread_runner_serves_sync_code(task, route_query):
    server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_scale=0))
    with server as url:
        assert url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(url + "/chat/completions", data=json.dumps(chat_body(QWEN, route_query))
                                         .encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["usage"]["completion_tokens"] > 0
    assert server.ledger[QWEN].calls == 1


def test_router_pool_for_the_server_matches_upstream_prompt():
    pool = simulated_candidate_pool("http://127.0.0.1:9/v1")
    assert template_for_pool(pool) == PROMPT_TEMPLATE_QWEN
    assert {c.base_url for c in pool} == {"http://127.0.0.1:9/v1"}
    assert pool.resolve("Gemma-2-27B-Instruct").temperature == 0.1


def test_command_line_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "rr1_jax.rollout.simulated_pool", "--port", str(port),
                             "--latency-scale", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        models = None
        for _ in range(100):  # bounded wait for start-up (≤ 20 s)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
                    models = json.loads(response.read())
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        assert models is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        assert len(models["data"]) == 6
    finally:
        proc.terminate()
        proc.wait(timeout=10)
