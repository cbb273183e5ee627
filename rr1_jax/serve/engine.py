"""Continuous batching: one asyncio loop owns the decode slots and serves every admitted request through them.

Each iteration of the loop
  1. frees the slots of cancelled requests (timed out, client gone) and admits queued requests into free slots,
  2. writes, in one engine call, the new requests' prompts and the observations that have arrived
     (`SlotBatch.write`: only the chosen rows run through the model; every other slot is untouched),
  3. decodes one segment over the active slots, and hands each slot's tokens to its job; a job whose turn ended
     may finish, continue at once, or start a candidate call.
A slot whose job waits on a candidate call is inactive: the other slots keep decoding while the HTTP call is in
flight, and the reply is appended at the next segment boundary after it arrives. So a request never waits for an
unrelated request's candidate calls — only for the segments and appends the loop runs anyway. Engine calls run
in a worker thread (`asyncio.to_thread`), one at a time, so the event loop keeps accepting and answering HTTP
requests while the device works. The loop sleeps when nothing can decode and nothing is ready.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Optional

from rr1_jax.generate.buckets import pick_bucket
from rr1_jax.generate.sampler import StopReason
from rr1_jax.generate.slots import SlotBatch
from rr1_jax.serve.jobs import Job

log = logging.getLogger("rr1_jax.serve")


class QueueFull(Exception):
    """More requests are waiting than the server accepts (the server answers 429)."""


class EngineStopped(Exception):
    """The engine loop is not running (not started, shut down, or stopped by an internal error)."""


class ContinuousBatcher:
    """The scheduling loop over a `SlotBatch`; `submit` jobs from the event loop the batcher was started in."""

    def __init__(self, slots: SlotBatch, segment_steps: int, max_queue: int = 256):
        self.slots, self.segment_steps, self.max_queue = slots, segment_steps, max_queue
        b = slots.num_slots
        self.owner: list[Optional[Job]] = [None] * b
        self.decoding = [False] * b
        self.pending: collections.deque = collections.deque()
        self.ready: dict = {}  # slot -> observation ids waiting to be appended
        self.calls: dict = {}  # slot -> asyncio.Task of the candidate call
        self._stop_slots: set = set()  # freed slots that may still be active on the device
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self.failure: Optional[BaseException] = None
        self.segments = 0
        self.writes = 0
        self.device_s = 0.0  # time in engine calls (writes and decode segments)

    # ---- lifecycle ----
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rr1-serve-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for task in list(self.calls.values()):
            task.cancel()
        self._fail_all(EngineStopped("the server is shutting down"))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- requests ----
    def submit(self, job: Job) -> None:
        if not self.running:
            raise EngineStopped("the engine is not running" + (f" ({type(self.failure).__name__})"
                                                               if self.failure else ""))
        if len(self.pending) >= self.max_queue:
            raise QueueFull(f"{len(self.pending)} requests are already queued")
        self.pending.append(job)
        self._wake.set()

    def cancel(self, job: Job) -> None:
        """Drop a request wherever it is (queued, decoding, waiting on a call); its slot is freed."""
        job.cancelled = True
        queued = [i for i, waiting in enumerate(self.pending) if waiting is job]
        if queued:  # a queued request gives its queue place back at once
            del self.pending[queued[0]]
        for slot, owner in enumerate(self.owner):
            if owner is job:
                self._free(slot)
                self._stop_slots.add(slot)
        if self._wake is not None:
            self._wake.set()

    def stats(self) -> dict:
        return {"slots": self.slots.num_slots, "busy": sum(o is not None for o in self.owner),
                "queued": len(self.pending), "calls_in_flight": len(self.calls), "segments": self.segments,
                "writes": self.writes, "device_s": round(self.device_s, 3)}

    # ---- the loop ----
    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                starts, resumes, budgets, seeds, stops = self._plan()
                if starts or resumes or stops:
                    t0 = time.perf_counter()
                    await asyncio.to_thread(self.slots.write, starts, resumes, budgets, seeds, stops)
                    self.device_s += time.perf_counter() - t0
                    self.writes += 1
                    for slot in list(starts) + list(resumes):  # unless cancelled meanwhile (then stopped next)
                        self.decoding[slot] = self.owner[slot] is not None
                if any(self.decoding):
                    t0 = time.perf_counter()
                    segment = await asyncio.to_thread(self.slots.decode, self.segment_steps)
                    self.device_s += time.perf_counter() - t0
                    self.segments += 1
                    self._dispatch(segment)
                elif not (starts or resumes or stops):
                    await self._wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # an engine bug or device error: fail every request, report on /healthz
            log.error("engine loop stopped: %s", type(err).__name__, exc_info=True)
            self.failure = err
            self._fail_all(EngineStopped(f"the engine stopped ({type(err).__name__})"))

    def _plan(self):
        """(starts, resumes, budgets, seeds, stops) for the next write; admits queued jobs into free slots."""
        starts, resumes, budgets, seeds = {}, {}, {}, {}
        ends = self.slots.ends() if self.ready else None
        for slot, obs in list(self.ready.items()):
            del self.ready[slot]
            job = self.owner[slot]
            if job is None:
                continue
            width = pick_bucket(max(len(obs), 1), self.slots.widths)
            if ends[slot] + width > self.slots.cache_len:  # the observation does not fit: end the request
                job.turn_ids = []
                job.end_generation(StopReason.CACHE_FULL)
                self._free(slot)
                continue
            resumes[slot], budgets[slot] = obs, job.next_turn_budget()
        free = [s for s, o in enumerate(self.owner) if o is None]
        while free and self.pending:
            job = self.pending.popleft()
            if job.cancelled:
                continue
            slot = free.pop(0)
            self.owner[slot] = job
            starts[slot], budgets[slot], seeds[slot] = job.prompt, job.next_turn_budget(), job.seed
        stops = self._stop_slots - set(starts)
        self._stop_slots = set()
        return starts, resumes, budgets, seeds, stops

    def _dispatch(self, segment) -> None:
        for slot in range(self.slots.num_slots):
            if not self.decoding[slot]:
                continue
            job = self.owner[slot]
            reason = int(segment.stop_reason[slot])
            if reason != StopReason.NONE:
                self.decoding[slot] = False
            if job is None:
                continue
            try:
                job.on_tokens(segment.tokens[slot])
                outcome = job.end_generation(StopReason(reason)) if reason != StopReason.NONE else None
            except Exception as err:
                log.error("request failed in its turn logic: %s", type(err).__name__, exc_info=True)
                job.fail(err)
                self._free(slot)
                self._stop_slots.add(slot)
                continue
            if reason == StopReason.NONE:
                continue
            if outcome is None:
                self._free(slot)  # finished; the slot stopped on its own
            elif isinstance(outcome, list):
                self.ready[slot] = outcome
            else:
                task = asyncio.ensure_future(outcome)
                self.calls[slot] = task
                task.add_done_callback(lambda t, s=slot, j=job: self._call_done(s, j, t))

    def _call_done(self, slot: int, job: Job, task: asyncio.Task) -> None:
        if self.calls.get(slot) is task:
            del self.calls[slot]
        if task.cancelled() or self.owner[slot] is not job:
            return
        if task.exception() is not None:
            err = task.exception()
            log.error("candidate call failed: %s", type(err).__name__)
            job.fail(err)
            self._free(slot)
        else:
            self.ready[slot] = task.result()
        self._wake.set()

    def _free(self, slot: int) -> None:
        self.owner[slot] = None
        self.decoding[slot] = False
        self.ready.pop(slot, None)
        task = self.calls.pop(slot, None)
        if task is not None:
            task.cancel()

    def _fail_all(self, error: BaseException) -> None:
        for job in list(self.pending) + [o for o in self.owner if o is not None]:
            job.fail(error)
        self.pending.clear()
        for slot in range(len(self.owner)):
            self._free(slot)
