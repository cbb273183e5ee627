"""An OpenAI-compatible server whose models are the synthetic task's simulated candidates (tests, demos, benchmarks).

`POST /v1/chat/completions` answers with `simulated_reply` (rr1_jax/data/synthetic_candidates.py) to the query
inside the helper prompt, after a per-model latency, with `usage` filled in; `GET /v1/models` lists the models.
Faults are injected at configured rates: 429 with `Retry-After`, 500, a timeout (the handler sleeps past the
client's timeout, then answers 504), a malformed JSON body, and a dropped connection. Everything is deterministic
per (seed, model, message, attempt number): the n-th request for the same thing always meets the same fault and
latency, so a retried call eventually succeeds. The server keeps a ledger (calls, tokens, cost, faults per model);
only successful replies are billed. It binds 127.0.0.1 only.

    with SimulatedPoolServer(task.table) as url: ...          # background thread, for sync code
    async with SimulatedPoolServer(task.table) as url: ...    # inside a running event loop
    python -m rr1_jax.rollout.simulated_pool --port 8000 --latency-scale 1
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import hashlib
import math
import threading
from typing import Optional, Sequence

from aiohttp import web

from rr1_jax.data.synthetic import KnowledgeTable, SyntheticConfig, make_synthetic_task
from rr1_jax.data.synthetic_candidates import (CandidateProfile, count_completion_tokens, default_candidates,
                                               simulated_reply)
from rr1_jax.rollout.candidates import ROUTER_R1_POOL, Candidate, CandidatePool
from rr1_jax.rollout.prompts import unwrap_agent_message

FAULT_KINDS = ("rate_limit", "server_error", "timeout", "malformed", "drop")
SIMULATED_KEY_ENV = "RR1_SIMULATED_POOL_KEY"  # never required; lets the live client's key handling be exercised


@dataclasses.dataclass(frozen=True)
class FaultRates:
    """Probability of each fault per request (their sum must be <= 1)."""

    rate_limit: float = 0.0  # 429 with Retry-After: retry_after_s
    server_error: float = 0.0  # 500
    timeout: float = 0.0  # sleep timeout_sleep_s (set it above the client's attempt timeout), then 504
    malformed: float = 0.0  # 200 with a truncated JSON body
    drop: float = 0.0  # close the connection without answering
    retry_after_s: float = 0.05
    timeout_sleep_s: float = 2.0

    def __post_init__(self):
        rates = [getattr(self, k) for k in FAULT_KINDS]
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError(f"FaultRates: each rate must be >= 0 and they must sum to <= 1, got {rates}")


@dataclasses.dataclass(frozen=True)
class SimulatedPoolConfig:
    seed: int = 0  # seeds faults, latencies and the candidates' right/wrong coin flips
    latency_scale: float = 1.0  # multiplies every latency (0: answer at once)
    latency_mean_s: Optional[float] = None  # override every profile's latency mean / std
    latency_std_s: Optional[float] = None
    faults: FaultRates = FaultRates()


@dataclasses.dataclass
class LedgerEntry:
    calls: int = 0  # billed (successful) replies
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cost: float = 0.0  # completion_tokens × $/1M (upstream unit)
    faults: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def simulated_candidate_pool(base_url: str, profiles: Sequence[CandidateProfile] = default_candidates(),
                             api_key_env: str = SIMULATED_KEY_ENV) -> CandidatePool:
    """The router-side pool for a simulated server: same names, ids and prices as the profiles; descriptions
    from upstream's pool where the name matches, so the default prompt is upstream's."""
    candidates = []
    for p in profiles:
        known = ROUTER_R1_POOL.resolve(p.name, "exact")
        description = known.description if known else f"{p.name} is a simulated candidate model."
        candidates.append(Candidate(name=p.name, model_id=p.model_id, base_url=base_url, api_key_env=api_key_env,
                                    output_price_per_1m=p.price_per_1m, input_price_per_1m=p.price_per_1m,
                                    description=description, temperature=known.temperature if known else 0.0))
    return CandidatePool(candidates)


class SimulatedPoolServer:
    """The server; see the module docstring for the two ways to run it."""

    def __init__(self, table: KnowledgeTable, profiles: Sequence[CandidateProfile] = default_candidates(),
                 config: SimulatedPoolConfig = SimulatedPoolConfig(), port: int = 0):
        self.table, self.config, self.port = table, config, port
        self.profiles = {p.model_id: p for p in profiles}
        self.ledger: dict[str, LedgerEntry] = {m: LedgerEntry() for m in self.profiles}
        self.requests = 0
        self.in_progress = 0
        self.max_in_progress = 0  # most chat requests handled at once (tests check the client's concurrency limit)
        self._attempts: collections.Counter = collections.Counter()
        self._runner: Optional[web.AppRunner] = None
        self._closing: Optional[asyncio.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def total_cost(self) -> float:
        return sum(e.cost for e in self.ledger.values())

    # ---- request handling ----
    def _latency(self, profile: CandidateProfile, *key) -> float:
        c = self.config
        mean = profile.latency_mean_s if c.latency_mean_s is None else c.latency_mean_s
        std = profile.latency_std_s if c.latency_std_s is None else c.latency_std_s
        u1, u2 = max(_uniform(*key, "lat1"), 1e-12), _uniform(*key, "lat2")
        normal = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)  # Box-Muller
        return max(0.0, (mean + std * normal) * c.latency_scale)

    def _fault(self, *key) -> Optional[str]:
        u, edge = _uniform(*key, "fault"), 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self.config.faults, kind)
            if u < edge:
                return kind
        return None

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)  # wakes early at shutdown
            except asyncio.TimeoutError:
                pass

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "owned_by": "rr1_jax-simulated"} for m in self.profiles]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.in_progress += 1
        self.max_in_progress = max(self.max_in_progress, self.in_progress)
        try:
            return await self._answer(request)
        finally:
            self.in_progress -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            model, messages = body["model"], body["messages"]
            content = messages[-1]["content"]
            assert isinstance(content, str)
        except (ValueError, KeyError, IndexError, TypeError, AssertionError):
            return web.json_response({"error": {"message": "body must be a chat-completions request with a "
                                                           "string message content"}}, status=400)
        profile = self.profiles.get(model)
        if profile is None:
            return web.json_response({"error": {"message": f"model {model!r} does not exist"}}, status=404)
        self._attempts[(model, content)] += 1
        key = (self.config.seed, model, content, self._attempts[(model, content)])
        fault = self._fault(*key)
        faults = self.config.faults
        if fault is not None:
            self.ledger[model].faults[fault] += 1
        if fault == "drop":
            request.transport.close()
            raise web.HTTPInternalServerError()  # never delivered: the connection is gone
        if fault == "rate_limit":
            return web.json_response({"error": {"message": "rate limited"}}, status=429,
                                     headers={"Retry-After": f"{faults.retry_after_s:g}"})
        if fault == "server_error":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault == "timeout":
            await self._sleep(faults.timeout_sleep_s)
            return web.json_response({"error": {"message": "upstream timeout"}}, status=504)
        await self._sleep(self._latency(profile, *key))
        query = unwrap_agent_message(content)
        reply = simulated_reply(profile, content if query is None else query, self.table, self.config.seed)
        if fault == "malformed":
            return web.Response(text='{"id": "x", "choices": [{"message": {"content": "trunc', status=200,
                                content_type="application/json")
        prompt_tokens = count_completion_tokens(content)
        entry = self.ledger[model]
        entry.calls += 1
        entry.completion_tokens += reply.completion_tokens
        entry.prompt_tokens += prompt_tokens
        entry.cost += reply.cost
        return web.json_response({
            "id": f"simulated-{self.requests}", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": reply.completion_tokens,
                      "total_tokens": prompt_tokens + reply.completion_tokens}})

    # ---- lifecycle ----
    async def start(self) -> str:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            self._closing.set()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def __enter__(self) -> str:
        """Run the server on its own event loop in a daemon thread; returns the base URL."""
        started, failure = threading.Event(), []
        self._loop = asyncio.new_event_loop()

        def serve():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self.start())
            except Exception as err:  # reported to the caller below
                failure.append(err)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="simulated-pool", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise RuntimeError(f"simulated pool could not start on 127.0.0.1:{self.port}: {failure[0]}")
        return self.url

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0, help="seeds faults, latencies and the candidates")
    parser.add_argument("--task-seed", type=int, default=0, help="SyntheticConfig.seed of the knowledge table")
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--latency-mean", type=float, default=None, help="override every model's mean (s)")
    parser.add_argument("--latency-std", type=float, default=None)
    for kind in FAULT_KINDS:
        parser.add_argument(f"--{kind.replace('_', '-')}-rate", type=float, default=0.0, dest=kind)
    args = parser.parse_args(argv)
    faults = FaultRates(**{k: getattr(args, k) for k in FAULT_KINDS})
    config = SimulatedPoolConfig(args.seed, args.latency_scale, args.latency_mean, args.latency_std, faults)
    table = make_synthetic_task(SyntheticConfig(seed=args.task_seed)).table

    async def serve():
        server = SimulatedPoolServer(table, config=config, port=args.port)
        print(f"simulated pool serving {list(server.profiles)} at {await server.start()}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
