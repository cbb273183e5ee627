"""One served request as the engine sees it: a prompt, per-turn token budgets, and what happens when a turn ends.

The engine (rr1_jax/serve/engine.py) owns the slots; a job owns the request's logic. After each generation the
engine calls `end_generation(stop_reason)`, which returns
  * None — the request is finished (the job has set its result),
  * a list of token ids — an observation to append right away (possibly empty), then generate again, or
  * a coroutine — a candidate call; the slot waits (inactive, so the others keep decoding) until it returns the
    observation's ids.

`RouterJob` is Router-R1's episode (the same per-turn rules as rr1_jax/rollout/worker.py): parse the turn,
route `<search> Model: query </search>` through the pool client (budgets, retries, metering), append
`<information>…</information>` cut to `max_obs_length` tokens, stop at `<answer>`, EOS, a full cache, the
request's token budget, or after `max_routed_calls` routed generations plus one final generation. `ChatJob` is one
plain generation (`--mode=model`) and streams text deltas as segments arrive.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Optional

from rr1_jax.generate.sampler import StopReason
from rr1_jax.generate.stops import upstream_cut
from rr1_jax.rollout.actions import parse_action, resolve_route
from rr1_jax.rollout.pool import Budget, PoolClient

_DONE = object()  # stream sentinel


@dataclasses.dataclass
class JobResult:
    content: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int  # policy tokens sampled (all turns)
    trace: Optional[dict] = None  # router mode: the routed calls


class Job:
    """Shared bookkeeping: token budget, the result future, and (when streaming) a queue of text deltas."""

    def __init__(self, prompt: list, max_tokens: int, max_turn_tokens: int, seed: int, stream: bool = False):
        self.prompt, self.max_tokens, self.max_turn_tokens, self.seed = list(prompt), max_tokens, max_turn_tokens, seed
        self.generated = 0
        self.turn_ids: list = []
        self.cancelled = False
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.deltas: Optional[asyncio.Queue] = asyncio.Queue() if stream else None

    # ---- engine interface ----
    def next_turn_budget(self) -> int:
        return max(1, min(self.max_turn_tokens, self.max_tokens - self.generated))

    def on_tokens(self, ids: list) -> None:
        self.turn_ids += ids

    def end_generation(self, reason: StopReason):
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()  # mark retrieved: a timed-out caller may never await it
        if self.deltas is not None:
            self.deltas.put_nowait(_DONE)

    # ---- helpers ----
    def _take_turn(self, reason: StopReason, eos_free: bool = True) -> list:
        ids, self.turn_ids = self.turn_ids, []
        self.generated += len(ids)
        if eos_free and reason == StopReason.EOS and ids:
            ids = ids[:-1]  # EOS is not text
        return ids

    def _emit(self, text: str) -> None:
        if self.deltas is not None and text:
            self.deltas.put_nowait(text)

    def _finish(self, result: JobResult) -> None:
        if not self.done.done():
            self.done.set_result(result)
        if self.deltas is not None:
            self.deltas.put_nowait(_DONE)

    async def stream(self):
        """Text deltas until the job ends (then the caller reads `done`)."""
        while True:
            item = await self.deltas.get()
            if item is _DONE:
                return
            yield item


class ChatJob(Job):
    """One generation of a plain chat model; text deltas are streamed as decode segments arrive."""

    def __init__(self, prompt: list, tokenizer, max_tokens: int, seed: int, stream: bool = False):
        super().__init__(prompt, max_tokens, max_tokens, seed, stream)
        self.tokenizer = tokenizer
        self._all: list = []
        self._sent = 0

    def on_tokens(self, ids: list) -> None:
        super().on_tokens(ids)
        self._all += [i for i in ids if i != self.tokenizer.eos_token_id]
        if self.deltas is not None:
            text = self.tokenizer.decode(self._all, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # hold back a partial UTF-8 character
                self._emit(text[self._sent:])
                self._sent = len(text)

    def end_generation(self, reason: StopReason):
        self._take_turn(reason)
        text = self.tokenizer.decode(self._all, skip_special_tokens=True)
        self._emit(text[self._sent:])
        self._finish(JobResult(text, "stop" if reason == StopReason.EOS else "length", len(self.prompt),
                               self.generated))
        return None


@dataclasses.dataclass(frozen=True)
class RouterRules:
    """Per-server routing rules (the request sets only its own limits)."""

    max_turn_tokens: int = 1024
    max_obs_length: int = 600
    split: str = "first"
    resolve_mode: str = "upstream"
    invalid_observation: str = ""


class RouterJob(Job):
    """Router-R1's multi-round loop for one question."""

    def __init__(self, prompt: list, tokenizer, client: PoolClient, rules: RouterRules, max_tokens: int,
                 max_routed_calls: int, max_cost: Optional[float], seed: int, stream: bool = False):
        super().__init__(prompt, max_tokens, rules.max_turn_tokens, seed, stream)
        self.tokenizer, self.client, self.rules = tokenizer, client, rules
        self.max_routed_calls = max_routed_calls
        self.budget = Budget(max_cost) if max_cost is not None else None
        self.calls: list = []
        self.generations = 0
        self.transcript: list = []  # policy turns and observations, as text

    def end_generation(self, reason: StopReason):
        ids = self._take_turn(reason)
        self.generations += 1
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        self.transcript.append(text)
        action = parse_action(upstream_cut(text), self.rules.split)
        if action.kind == "answer":
            return self._done(action.content, "stop", "answer")
        if reason == StopReason.EOS:
            return self._done(text.strip(), "stop", "eos")
        if reason == StopReason.CACHE_FULL:
            return self._done(text.strip(), "length", "cache-full")
        if self.generated >= self.max_tokens:
            return self._done(text.strip(), "length", "max-tokens")
        if self.generations > self.max_routed_calls:
            return self._done(text.strip(), "length", "turn-limit")  # the final generation did not answer
        if action.is_route:
            return self._route(action)
        return self._encode(self.rules.invalid_observation)[:self.rules.max_obs_length]

    async def _route(self, action) -> list:
        candidate = resolve_route(action, self.client.pool, self.rules.resolve_mode)
        result = await self.client.call(candidate, action.query, [self.budget] if self.budget else [])
        observation = self.client.observation(result)
        full = self._encode(observation)
        obs = full[:self.rules.max_obs_length]
        self.transcript.append(observation if len(obs) == len(full) else self.tokenizer.decode(obs))
        self.calls.append({
            "model": result.candidate or action.model_name, "model_id": result.model_id, "query": action.query,
            "response": result.content, "error": result.error, "completion_tokens": result.completion_tokens,
            "prompt_tokens": result.prompt_tokens, "cost": result.cost, "dollars": result.dollars,
            "latency_s": round(result.latency_s, 4), "cached": result.cached, "observation_tokens": len(obs)})
        return obs

    def _done(self, content: str, finish_reason: str, finished: str) -> None:
        self._emit(content)
        trace = {"calls": self.calls, "num_calls": len(self.calls),
                 "total_cost": sum(c["cost"] for c in self.calls),
                 "total_dollars": sum(c["dollars"] for c in self.calls),
                 "cost_unit": "completion tokens x $ per 1M output tokens (dollars x 1e6)",
                 "generations": self.generations, "finished": finished, "transcript": "".join(self.transcript)}
        self._finish(JobResult(content, finish_reason, len(self.prompt), self.generated, trace))
        return None

    def _encode(self, text: str) -> list:
        return list(self.tokenizer.encode(text, add_special_tokens=False))
