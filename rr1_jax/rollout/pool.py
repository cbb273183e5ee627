"""The routing pool client: async OpenAI-compatible chat calls to the candidate LLMs (aiohttp).

One shared `ClientSession` per client; a semaphore bounds concurrent requests; every call has a per-attempt
timeout and a total deadline, and retries 429/5xx/timeouts/dropped connections/malformed bodies with exponential
backoff and jitter, honouring `Retry-After`. A call never raises: failures come back as a `RouteResult` with
`ok=False`, which the rollout turns into upstream's `<information>None</information>` observation
(`PoolConfig.failure_text`). Cost is metered in upstream's unit, `usage.completion_tokens × $/1M output price`
(no 1e-6); prompt tokens and true dollars are recorded too. An optional on-disk cache (`ResponseCache`) makes
evaluations reproducible and re-runs free; a cached reply is metered exactly as the original call (so rewards
do not change) but is not billed. Budgets cap the metered cost per episode or per batch: once spent, calls are
refused with `PoolConfig.budget_text`.

Requests mirror upstream's: the helper prompt `AGENT_PROMPT` wrapping the query as the only user message,
`temperature` = the candidate's, `top_p=1.0`, `seed=42`, `max_tokens` = the candidate's (512). API keys are read
from the environment variables the candidates name, and only ever placed in the request header.
"""
from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import os
import random
import time
from typing import Optional, Sequence

import aiohttp

from rr1_jax.rollout.candidates import Candidate, CandidatePool
from rr1_jax.rollout.prompts import agent_message
from rr1_jax.rollout.response_cache import CachedReply, ResponseCache

BUDGET_EXHAUSTED = "budget exhausted"
UNKNOWN_NAME = "unknown model name"
_RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """How calls are made. Times are seconds; budget texts and failure texts are what the policy reads."""

    max_concurrency: int = 16
    attempt_timeout_s: float = 60.0  # one HTTP attempt (upstream: 60)
    deadline_s: float = 300.0  # the whole call, retries and waits included
    max_attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 16.0
    top_p: float = 1.0
    seed: Optional[int] = 42
    failure_text: str = "None"  # upstream's observation for an unknown name or a failed call
    budget_text: str = "Routing budget exhausted: this call was refused."
    cache_path: Optional[str] = None
    require_keys: bool = True  # fail at start when a candidate's API-key variable is unset

    def __post_init__(self):
        positive = ("max_concurrency", "attempt_timeout_s", "deadline_s", "max_attempts")
        bad = [f for f in positive if not getattr(self, f) > 0]
        bad += [f for f in ("backoff_initial_s", "backoff_max_s") if getattr(self, f) < 0]
        if bad:
            raise ValueError(f"PoolConfig: {bad} must be positive (backoff: >= 0)")


@dataclasses.dataclass(frozen=True)
class RouteResult:
    """One routed call. `cost` is upstream's metered cost (0 unless the endpoint returned a reply)."""

    candidate: Optional[str]  # resolved candidate name; None when the written name matched no candidate
    model_id: Optional[str]
    query: str
    content: Optional[str]  # the reply; None when the call failed or was refused
    error: Optional[str] = None  # None on success, else why (never contains an API key)
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cost: float = 0.0  # completion_tokens × output $/1M (upstream unit)
    dollars: float = 0.0  # (completion × output price + prompt × input price) / 1e6
    latency_s: float = 0.0
    attempts: int = 0  # HTTP attempts made (0: unknown name, refused, or served from the cache)
    cached: bool = False
    usage_missing: bool = False  # the endpoint sent no `usage`: tokens and cost are recorded as 0

    @property
    def ok(self) -> bool:
        return self.content is not None


class Budget:
    """A cap on the metered cost of a set of calls (an episode, a batch); refused calls cost nothing."""

    def __init__(self, limit: float):
        if not limit >= 0:
            raise ValueError(f"budget limit must be >= 0, got {limit}")
        self.limit, self.spent = float(limit), 0.0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limit

    def charge(self, cost: float) -> None:
        self.spent += cost


@dataclasses.dataclass
class PoolStats:
    """Counters over a client's lifetime (tests and logs)."""

    calls: int = 0
    http_attempts: int = 0
    cache_hits: int = 0
    failures: int = 0
    refused: int = 0
    billed_cost: float = 0.0  # metered cost of replies actually fetched (cache hits excluded)
    in_flight: int = 0
    max_in_flight: int = 0


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: Optional[float] = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Fatal(Exception):
    def __init__(self, reason: str, tokens: tuple[int, int] = (0, 0)):
        super().__init__(reason)
        self.reason, self.tokens = reason, tokens


def _retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), None when absent or unparsable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _parse_reply(body: bytes) -> tuple[str, int, int, bool]:
    """(content, completion_tokens, prompt_tokens, usage_missing) from a chat-completions body."""
    try:
        data = json.loads(body)
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retry("malformed response body") from None
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = (0, 0)
    if isinstance(usage, dict):
        try:
            tokens = (int(usage.get("completion_tokens") or 0), int(usage.get("prompt_tokens") or 0))
        except (TypeError, ValueError):
            usage = None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise _Fatal("reply has no text (content: null)", tokens)
    return content, tokens[0], tokens[1], not isinstance(usage, dict)


class PoolClient:
    """Async client for one candidate pool; use as `async with PoolClient(pool, config) as client:`."""

    def __init__(self, pool: CandidatePool, config: PoolConfig = PoolConfig(), rng_seed: int = 0):
        self.pool, self.config = pool, config
        self.stats = PoolStats()
        self._session: Optional[aiohttp.ClientSession] = None
        self._semaphore: Optional[asyncio.Semaphore] = None
        self._cache = ResponseCache(config.cache_path) if config.cache_path else None
        self._jitter = random.Random(rng_seed)  # jitter only changes waits, never results

    async def __aenter__(self) -> "PoolClient":
        if self.config.require_keys:
            missing = self.pool.missing_key_vars()
            if missing:
                raise ValueError(f"API key environment variable(s) {missing} are not set; export them, or set "
                                 f"PoolConfig.require_keys=False for endpoints that need no key")
        self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.config.max_concurrency))
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._cache is not None:
            self._cache.close()

    # ---- observations ----
    def information_text(self, result: RouteResult) -> str:
        """What the policy reads inside <information>: the stripped reply, or the failure / refusal text."""
        if result.ok:
            return result.content.strip()
        return self.config.budget_text if result.error == BUDGET_EXHAUSTED else self.config.failure_text

    def observation(self, result: RouteResult) -> str:
        """Upstream's observation string for a routed call."""
        return "\n\n<information>" + self.information_text(result) + "</information>\n\n"

    # ---- calls ----
    def request_payload(self, candidate: Candidate, query: str) -> dict:
        payload = {"model": candidate.model_id, "messages": [{"role": "user", "content": agent_message(query)}],
                   "temperature": candidate.temperature, "top_p": self.config.top_p,
                   "max_tokens": candidate.max_tokens}
        if self.config.seed is not None:
            payload["seed"] = self.config.seed
        return payload

    async def call(self, candidate: Optional[Candidate], query: str, budgets: Sequence[Budget] = ()) -> RouteResult:
        """Route `query` to `candidate` (None: the name did not resolve). Never raises on endpoint trouble."""
        if self._session is None:
            raise RuntimeError("PoolClient is not started: use `async with PoolClient(...) as client`")
        self.stats.calls += 1
        if candidate is None:
            self.stats.failures += 1
            return RouteResult(None, None, query, None, error=UNKNOWN_NAME)
        if any(b.exhausted for b in budgets):
            self.stats.refused += 1
            return RouteResult(candidate.name, candidate.model_id, query, None, error=BUDGET_EXHAUSTED)
        payload = self.request_payload(candidate, query)
        start = time.monotonic()
        cached = self._cache.get(payload) if self._cache is not None else None
        if cached is not None:
            self.stats.cache_hits += 1
            result = self._result(candidate, query, cached.content, cached.completion_tokens, cached.prompt_tokens,
                                  time.monotonic() - start, attempts=0, cached=True)
        else:
            result = await self._fetch(candidate, query, payload, start)
            self.stats.billed_cost += result.cost
            if not result.ok:
                self.stats.failures += 1
            elif self._cache is not None and not result.usage_missing:
                self._cache.put(payload, CachedReply(result.content, result.completion_tokens,
                                                     result.prompt_tokens))
        for budget in budgets:
            budget.charge(result.cost)
        return result

    def _result(self, candidate, query, content, completion, prompt, latency, attempts, cached=False,
                error=None, usage_missing=False) -> RouteResult:
        cost = completion * candidate.output_price_per_1m
        dollars = (completion * candidate.output_price_per_1m + prompt * candidate.input_price_per_1m) / 1e6
        return RouteResult(candidate.name, candidate.model_id, query, content, error, completion, prompt, cost,
                           dollars, latency, attempts, cached, usage_missing)

    async def _fetch(self, candidate: Candidate, query: str, payload: dict, start: float) -> RouteResult:
        cfg = self.config
        key = os.environ.get(candidate.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = candidate.base_url.rstrip("/") + "/chat/completions"
        deadline = start + cfg.deadline_s
        reason = "no attempt made"
        for attempt in range(1, cfg.max_attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = f"deadline of {cfg.deadline_s}s passed ({reason})"
                break
            try:
                content, completion, prompt, usage_missing = await self._attempt(
                    url, payload, headers, min(cfg.attempt_timeout_s, remaining), candidate)
                return self._result(candidate, query, content, completion, prompt, time.monotonic() - start,
                                    attempt, usage_missing=usage_missing)
            except _Fatal as fatal:
                return self._result(candidate, query, None, *fatal.tokens, time.monotonic() - start, attempt,
                                    error=fatal.reason)
            except _Retry as retry:
                reason = retry.reason
                if attempt == cfg.max_attempts:
                    break
                backoff = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (attempt - 1))
                wait = self._jitter.uniform(0.5, 1.0) * backoff
                if retry.retry_after is not None:
                    wait = max(wait, retry.retry_after)
                if time.monotonic() + wait >= deadline:
                    reason = f"{reason}; the next retry would pass the {cfg.deadline_s}s deadline"
                    break
                await asyncio.sleep(wait)
        return self._result(candidate, query, None, 0, 0, time.monotonic() - start, attempt, error=reason)

    async def _attempt(self, url: str, payload: dict, headers: dict, timeout: float, candidate: Candidate):
        async with self._semaphore:
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            self.stats.http_attempts += 1
            try:
                async with self._session.post(url, json=payload, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                    body = await response.read()
                    status = response.status
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            except asyncio.TimeoutError:
                raise _Retry(f"timeout after {timeout:.3g}s") from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
                raise _Retry(f"connection error ({type(err).__name__})") from None
            finally:
                self.stats.in_flight -= 1
        if status == 200:
            return _parse_reply(body)
        if status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status}", retry_after)
        if status in (401, 403):
            raise _Fatal(f"HTTP {status}: authentication failed; check the key in ${candidate.api_key_env}")
        raise _Fatal(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
