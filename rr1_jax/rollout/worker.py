"""The multi-turn Router-R1 rollout: decode, parse, route, append `<information>`, repeat; then a trajectory batch.

Per slot (spec/router-r1.md §5.3): up to `max_turns` generations may route; each routed call's reply is appended
as `\\n\\n<information>…</information>\\n\\n` (cut to `max_obs_length` tokens, keeping the head) and the slot
generates again; one final generation follows in which a route is not executed (no observation). `<answer>`, EOS
or a full cache end the episode. An invalid action appends nothing (upstream; `invalid_observation` can name a
text to append instead) and the slot simply continues.

Two schedules over the same per-slot logic (`RolloutConfig.mode`):
* "async": a route's call starts the moment its slot stops; the other slots keep decoding in the next segments,
  and each reply is appended at the first segment boundary after it arrives. The host waits only when no slot
  can decode.
* "sync": upstream's turn-synchronous loop — every slot finishes its generation, then all calls of the turn run
  concurrently and all are awaited, then one append (or, with `reprefill=True`, upstream's re-prefill of every
  continuing slot's whole context).
A slot's tokens depend only on its own context and PRNG key (the engine advances a slot's key only when it
samples), so both schedules give the same trajectories; only the wall time differs.

Multi-host: each process runs its own worker over its own slots, decoding on its own devices
(`rr1_jax.parallel.multihost`), so no jitted call in the rollout spans processes and the schedules (whose segment
boundaries depend on reply timing) need no agreement between hosts; `slot_ids` gives each slot the sampling key of
its position in the global batch. Hosts agree only afterwards, on the trajectory widths, before the update.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from typing import Optional, Sequence

from rr1_jax.generate.buckets import pick_bucket
from rr1_jax.generate.sampler import StopReason
from rr1_jax.generate.stops import upstream_cut
from rr1_jax.rollout.actions import Action, parse_action, resolve_route
from rr1_jax.rollout.episode import RolloutResult, RolloutTiming, RouteRecord, SlotState
from rr1_jax.rollout.pool import Budget, PoolClient, RouteResult
from rr1_jax.rollout.trajectory import build_trajectories

MODES = ("async", "sync")
ANSWER_END = "</answer>"


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    max_turns: int = 4  # generations that may route; one more final generation follows
    max_obs_length: int = 600  # observation tokens kept (head)
    segment_steps: int = 64  # decode steps per jitted segment (async: how often replies can be inserted)
    resume_min_ready: int = 1  # async: append once this many replies wait (or nothing else can decode); an
    # append runs only a power-of-two bucket of rows >= the replies it serves ([K, obs bucket] forward, see
    # Sampler.append), so batching saves little more than per-call overhead
    mode: str = "async"
    reprefill: bool = False  # sync only: re-prefill whole contexts each turn instead of appending
    split: str = "first"  # route parsing: "first" colon, or "upstream" (see actions.py)
    resolve_mode: str = "upstream"  # candidate name matching: "upstream" substrings or "exact"
    invalid_observation: str = ""  # appended after an invalid action ("" = nothing, as upstream)
    episode_budget: Optional[float] = None  # metered-cost cap per episode (upstream units)
    batch_budget: Optional[float] = None  # metered-cost cap for the whole batch
    prompt_buckets: Optional[Sequence[int]] = None  # trajectory prompt widths (None: the longest prompt)
    response_buckets: Optional[Sequence[int]] = None  # trajectory response widths (None: the longest response)
    # A trained response keeps its first max_response_tokens tokens (0: all), and the rewards read only those, as
    # upstream keeps the first max_prompt_length = 4096 response columns; the episode's calls all count in its cost.
    max_response_tokens: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"RolloutConfig.mode={self.mode!r}: choose one of {MODES}")
        if self.reprefill and self.mode != "sync":
            raise ValueError("RolloutConfig.reprefill=True needs mode='sync' (re-prefill restarts every slot)")
        if (self.max_turns < 0 or self.max_obs_length < 0 or self.max_response_tokens < 0 or self.segment_steps <= 0
                or self.resume_min_ready < 1):
            raise ValueError("RolloutConfig: max_turns, max_obs_length and max_response_tokens must be >= 0, "
                             "segment_steps and resume_min_ready > 0")


class RolloutWorker:
    """Runs one batch of episodes through a policy (see rollout/policy.py) and a started `PoolClient`."""

    def __init__(self, policy, client: PoolClient, tokenizer, config: RolloutConfig = RolloutConfig()):
        self.policy, self.client, self.tokenizer, self.config = policy, client, tokenizer, config
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-decode")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def run(self, prompts: Sequence[Sequence[int]], seed: int = 0,
                  slot_ids: Optional[Sequence[int]] = None) -> RolloutResult:
        """Roll out one episode per prompt (at most `policy.num_slots`); `slot_ids`: see EnginePolicy.start."""
        if not prompts or len(prompts) > self.policy.num_slots or any(len(p) == 0 for p in prompts):
            raise ValueError(f"need 1..{self.policy.num_slots} non-empty prompts, got {len(prompts)}")
        cfg = self.config
        self._slots = [SlotState(list(p), Budget(cfg.episode_budget) if cfg.episode_budget is not None else None)
                       for p in prompts]
        self._batch_budget = Budget(cfg.batch_budget) if cfg.batch_budget is not None else None
        self._timing = RolloutTiming()
        self._in_flight, self._busy_since, self._tasks, self._errors = 0, 0.0, set(), []
        start = time.perf_counter()
        start_args = (seed,) if slot_ids is None else (seed, slot_ids)
        await self._on_device(self.policy.start, [s.prompt for s in self._slots], *start_args)
        if cfg.mode == "async":
            await self._run_async()
        else:
            await self._run_sync()
        self._timing.wall_s = time.perf_counter() - start
        return self._result()

    # ---- schedules ----
    async def _run_async(self) -> None:
        while True:
            if self._errors:
                raise self._errors[0]
            ready = {b: s.pending_obs for b, s in enumerate(self._slots) if s.status == "ready"}
            decodable = any(s.status == "decoding" for s in self._slots)
            if ready and (len(ready) >= self.config.resume_min_ready or not decodable):
                await self._resume(ready)
            if any(s.status == "decoding" for s in self._slots):
                await self._decode_segment(launch_calls=True)
            elif self._tasks:
                t0 = time.perf_counter()
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                self._timing.exposed_wait_s += time.perf_counter() - t0
            else:
                return

    async def _run_sync(self) -> None:
        while True:
            requests = []
            while any(s.status == "decoding" for s in self._slots):
                requests += await self._decode_segment(launch_calls=False)
            if requests:
                t0 = time.perf_counter()
                await asyncio.gather(*(self._route(*r) for r in requests))
                self._timing.exposed_wait_s += time.perf_counter() - t0
            ready = {b: s.pending_obs for b, s in enumerate(self._slots) if s.status == "ready"}
            if not ready:
                return
            if self.config.reprefill:
                for b, obs in ready.items():
                    self._slots[b].take_observation(obs)
                    self._slots[b].status = "decoding"
                contexts = {b: self._slots[b].prompt + self._slots[b].response for b in ready}
                await self._on_device(self.policy.restart, contexts)
            else:
                await self._resume(ready)

    # ---- steps ----
    async def _on_device(self, fn, *args):
        t0 = time.perf_counter()
        out = await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        elapsed = time.perf_counter() - t0
        self._timing.device_s += elapsed
        if fn in (self.policy.resume, self.policy.restart):
            self._timing.append_s += elapsed
            self._timing.appends += 1
        return out

    async def _resume(self, ready: dict) -> None:
        for b, obs in ready.items():
            self._slots[b].take_observation(obs)
            self._slots[b].status = "decoding"
        await self._on_device(self.policy.resume, ready)

    async def _decode_segment(self, launch_calls: bool) -> list:
        was_decoding = [s.status == "decoding" for s in self._slots]
        segment = await self._on_device(self.policy.decode, self.config.segment_steps)
        self._timing.segments += 1
        requests = []
        for b, slot in enumerate(self._slots):
            if not was_decoding[b]:
                continue
            slot.turn_ids += segment.tokens[b]
            slot.turn_logprobs += [float(x) for x in segment.logprobs[b]]
            reason = int(segment.stop_reason[b])
            if reason != StopReason.NONE:
                request = self._end_generation(b, StopReason(reason))
                if request is not None:
                    if launch_calls:
                        task = asyncio.ensure_future(self._route(*request))
                        self._tasks.add(task)
                        task.add_done_callback(self._task_done)
                    else:
                        requests.append(request)
        return requests

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(task.exception())  # re-raised by the schedule loop, never lost

    def _end_generation(self, b: int, reason: StopReason) -> Optional[tuple]:
        """Commit slot b's finished generation and decide what happens next; returns a route request or None."""
        slot, cfg = self._slots[b], self.config
        ids, logprobs = slot.turn_ids, slot.turn_logprobs
        if reason == StopReason.EOS and ids:
            ids, logprobs = ids[:-1], logprobs[:-1]  # EOS is never part of a trained response (upstream)
        slot.commit_generation(ids, logprobs, reason.name)
        action = parse_action(upstream_cut(self.tokenizer.decode(ids, skip_special_tokens=True)), cfg.split)
        final = slot.info.num_generations > cfg.max_turns
        slot.info.actions.append(_action_label(action, final))
        if action.kind == "answer" or reason in (StopReason.EOS, StopReason.CACHE_FULL) or final:
            slot.finish("answer" if action.kind == "answer" else
                        {StopReason.EOS: "eos", StopReason.CACHE_FULL: "cache-full"}.get(reason, "turn-limit"))
            return None
        if action.is_route:
            slot.status = "waiting"
            return b, action
        slot.pending_obs = self._encode(cfg.invalid_observation) if cfg.invalid_observation else []
        slot.status = "ready"
        return None

    async def _route(self, b: int, action: Action) -> None:
        slot = self._slots[b]
        candidate = resolve_route(action, self.client.pool, self.config.resolve_mode)
        budgets = [x for x in (slot.budget, self._batch_budget) if x is not None]
        self._call_started()
        try:
            result = await self.client.call(candidate, action.query, budgets)
        finally:
            self._call_ended()
        self._deliver(b, action, result)

    def _deliver(self, b: int, action: Action, result: RouteResult) -> None:
        slot = self._slots[b]
        full = self._encode(self.client.observation(result))
        obs = full[:self.config.max_obs_length]
        slot.info.routes.append(RouteRecord.from_result(slot.info.num_generations, action.model_name, result,
                                                        len(obs), len(obs) < len(full)))
        slot.info.cost += result.cost
        slot.info.dollars += result.dollars
        slot.pending_obs, slot.status = obs, "ready"

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _call_started(self) -> None:
        if self._in_flight == 0:
            self._busy_since = time.perf_counter()
        self._in_flight += 1

    def _call_ended(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._timing.call_busy_s += time.perf_counter() - self._busy_since

    # ---- output ----
    def _result(self) -> RolloutResult:
        cfg = self.config
        cut = cfg.max_response_tokens or None  # upstream's right side: the first columns of each response
        prompts = [s.prompt for s in self._slots]
        responses = [s.response[:cut] for s in self._slots]
        longest_prompt = max(len(p) for p in prompts)
        longest_response = max(1, max(len(r) for r in responses))
        prompt_width = pick_bucket(longest_prompt, cfg.prompt_buckets) if cfg.prompt_buckets else longest_prompt
        response_width = (pick_bucket(longest_response, cfg.response_buckets) if cfg.response_buckets
                          else longest_response)
        pad_id = getattr(self.policy, "pad_id", None)
        pad_id = self.tokenizer.pad_token_id if pad_id is None else pad_id
        trajectories = build_trajectories(prompts, responses, [s.policy_flags[:cut] for s in self._slots],
                                          [s.logprobs[:cut] for s in self._slots], prompt_width, response_width,
                                          pad_id, num_rows=self.policy.num_slots)
        episodes = []
        for slot, response in zip(self._slots, responses):
            slot.info.response_cut = len(response) < len(slot.response)
            text = self.tokenizer.decode(response, skip_special_tokens=True)
            end = text.rfind(ANSWER_END)
            if slot.info.finished == "answer" and end >= 0:
                # the id completing `</answer>` may carry more bytes (`>.`); they stay in the trained ids
                # (generate/stops.py), but the text the rewards read ends where upstream's cut text ends
                text = text[:end + len(ANSWER_END)]
            slot.info.response_text = text
            episodes.append(slot.info)
        return RolloutResult(trajectories, episodes, self._timing)


def _action_label(action: Action, final: bool) -> str:
    if action.kind == "invalid":
        return action.reason
    return "route-unanswered" if action.is_route and final else action.kind


async def rollout(policy, client: PoolClient, tokenizer, prompts: Sequence[Sequence[int]],
                  config: RolloutConfig = RolloutConfig(), seed: int = 0,
                  slot_ids: Optional[Sequence[int]] = None) -> RolloutResult:
    """One batch with a fresh worker (the client must already be started)."""
    worker = RolloutWorker(policy, client, tokenizer, config)
    try:
        return await worker.run(prompts, seed, slot_ids)
    finally:
        worker.close()
