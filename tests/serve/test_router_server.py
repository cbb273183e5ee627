"""The router endpoint through the official `openai` client: answers, SSE streaming, router_trace vs the pool's
ledger, budgets, bearer auth, 4xx for bad requests, 5xx without secrets, and continuous batching behaviour."""
import asyncio
import json
import logging
import time
import urllib.error
import urllib.request

import openai
import pytest

from rr1_jax.rollout.prompts import render_prompt
from tests.serve.conftest import POOL_KEY, ROUTER_CONFIG, TEMPLATE, THINK_STEPS, TOKEN

MODEL = ROUTER_CONFIG.model_name
TURN_TOKENS = THINK_STEPS + 3  # "<think>…", N steps, "</think>", then the route or the answer
QUESTION = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "Which city is the capital?"}]


def raw_post(url, data: bytes, token=TOKEN, path="/chat/completions", method="POST"):
    """(status, JSON body) of a request the openai client cannot send (bad JSON, no auth header, …)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def ledger_cost(server):
    return server.total_cost()


def test_answer_usage_and_trace_match_the_pool_ledger(router, client, fact, toy):
    url, service, server = router
    before, requests = ledger_cost(server), server.requests
    response = client.chat.completions.create(model=MODEL, messages=QUESTION)
    choice = response.choices[0]
    assert choice.message.content == fact[1] and choice.finish_reason == "stop"
    prompt = render_prompt(toy.tokenizer, "Which city is the capital?", TEMPLATE)  # the last user message only
    assert response.usage.prompt_tokens == len(prompt)
    assert response.usage.completion_tokens == 2 * TURN_TOKENS
    trace = response.router_trace
    assert trace["num_calls"] == 1 and trace["finished"] == "answer" and trace["generations"] == 2
    call = trace["calls"][0]
    assert call["model"] == "Qwen2.5-7B-Instruct" and call["query"] == fact[0] and fact[1] in call["response"]
    assert call["completion_tokens"] > 0 and call["latency_s"] > 0 and call["error"] is None
    assert server.requests == requests + 1
    assert trace["total_cost"] == pytest.approx(ledger_cost(server) - before, rel=1e-12) and call["cost"] > 0
    assert "<information>" in trace["transcript"] and trace["transcript"].endswith(f"<answer> {fact[1]} </answer>")


def test_streaming_sends_the_answer_then_trace_then_usage(router, client, fact):
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == fact[1]
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert finish[0].router_trace["num_calls"] == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 2 * TURN_TOKENS
    assert all(c.usage is None for c in chunks[:-1])
    # without include_usage no chunk carries usage
    plain = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))
    assert all(getattr(c, "usage", None) is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"


def test_budget_and_call_limits_are_enforced(router, client, fact):
    url, service, server = router
    before, requests = ledger_cost(server), server.requests
    refused = client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body={"max_cost": 0})
    call = refused.router_trace["calls"][0]
    assert call["error"] == "budget exhausted" and call["cost"] == 0 and call["response"] is None
    assert refused.router_trace["total_cost"] == 0
    assert "budget exhausted" in refused.router_trace["transcript"]
    no_calls = client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body={"max_routed_calls": 0})
    assert no_calls.router_trace["num_calls"] == 0 and no_calls.router_trace["finished"] == "turn-limit"
    assert no_calls.choices[0].finish_reason == "length" and no_calls.usage.completion_tokens == TURN_TOKENS
    assert server.requests == requests and ledger_cost(server) == before  # the pool was never called
    short = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError, match="max_routed_calls.*limit of 2"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body={"max_routed_calls": 3})


def test_bearer_auth(router):
    url = router[0]
    for token in (None, "wrong-token"):
        status, body = raw_post(url, json.dumps({"model": MODEL, "messages": QUESTION}).encode(), token=token)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert "RR1_SERVE_TOKEN" in body["error"]["message"] and TOKEN not in json.dumps(body)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    assert raw_post(url, None, token=None, path="/models", method="GET")[0] == 401
    health = json.loads(urllib.request.urlopen(url.removesuffix("/v1") + "/healthz", timeout=10).read())
    assert health["status"] == "ok" and health["slots"] == ROUTER_CONFIG.num_slots  # no token needed


def test_models_lists_the_router(client):
    assert [m.id for m in client.models.list()] == [MODEL]


def test_bad_requests_get_clear_4xx(router, client):
    url = router[0]
    with pytest.raises(openai.NotFoundError, match="does not exist here; use 'rr1-router'"):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="non-empty list"):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError, match="non-empty user message"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": "hi"}])
    limit = ROUTER_CONFIG.max_turn_tokens * (ROUTER_CONFIG.max_routed_calls + 1)
    with pytest.raises(openai.BadRequestError, match=f"exceeds this server's limit of {limit}"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=limit + 1)
    with pytest.raises(openai.BadRequestError, match="'n'"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, n=2)
    with pytest.raises(openai.BadRequestError, match="max_prompt_tokens"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 300}])
    status, body = raw_post(url, b'{"model": "rr1-router", "messages": [')
    assert status == 400 and body["error"]["code"] == "invalid_json" and "not valid JSON" in body["error"]["message"]
    assert raw_post(url, b'[1, 2]')[0] == 400
    status, body = raw_post(url, json.dumps({"model": MODEL, "messages": [{"role": "user",
                                                                           "content": "x" * (2 << 20)}]}).encode())
    assert status == 413 and "larger than this server's limit" in body["error"]["message"]
    status, body = raw_post(url, json.dumps({"model": MODEL, "messages": QUESTION, "stream_options": {}}).encode())
    assert status == 400 and body["error"]["param"] == "stream_options"
    assert raw_post(url, None, path="/nowhere", method="GET")[0] == 404
    assert raw_post(url, None, method="GET")[0] == 405


def test_server_fault_is_a_500_without_secrets(router, client, monkeypatch, caplog):
    service = router[1]

    def broken(request):
        raise RuntimeError(f"tokenizer exploded near {TOKEN} and {POOL_KEY}")

    monkeypatch.setattr(service, "make_job", broken)
    with caplog.at_level(logging.ERROR, logger="rr1_jax.serve"):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model=MODEL, messages=QUESTION)
    body = json.dumps(info.value.body)
    assert "internal server error (id" in body and TOKEN not in body and POOL_KEY not in body
    assert "exploded" not in body  # no detail leaks into the response
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "exploded" in logged and TOKEN not in logged and POOL_KEY not in logged and "***" in logged


def test_a_request_never_waits_for_an_unrelated_call(router, fact):
    """A routes (its call takes CALL_LATENCY_S); B, sent while A's call is in flight, never routes and must
    finish first. Then 10 concurrent requests on 4 slots (queueing) all succeed and free their slots."""
    url, service, server = router

    async def go():
        aclient = openai.AsyncOpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=60.0)
        done = {}

        async def ask(name, **extra):
            response = await aclient.chat.completions.create(model=MODEL, messages=QUESTION, extra_body=extra)
            done[name] = time.perf_counter()
            return response

        a = asyncio.ensure_future(ask("a"))
        while service.batcher.stats()["calls_in_flight"] == 0:
            await asyncio.sleep(0.005)
        b = await ask("b", max_routed_calls=0)
        await a
        assert done["b"] < done["a"] and b.router_trace["num_calls"] == 0
        many = await asyncio.gather(*(ask(i) for i in range(10)))
        await aclient.close()
        return many

    many = asyncio.run(go())
    assert all(r.choices[0].message.content == fact[1] for r in many)
    assert all(r.router_trace["num_calls"] == 1 for r in many)
    stats = service.batcher.stats()
    assert stats["busy"] == 0 and stats["queued"] == 0 and stats["calls_in_flight"] == 0


def test_timeout_is_a_504_and_frees_the_slot(router, client):
    service = router[1]
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body={"timeout": 0.05})
    assert info.value.status_code == 504 and "did not finish within 0.05s" in str(info.value)
    with pytest.raises(openai.APIError, match="did not finish within"):
        list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True,
                                            extra_body={"timeout": 0.05}))
    deadline = time.time() + 10
    while service.batcher.stats()["busy"] and time.time() < deadline:
        time.sleep(0.02)
    assert service.batcher.stats()["busy"] == 0
    assert client.chat.completions.create(model=MODEL, messages=QUESTION).choices[0].finish_reason == "stop"
