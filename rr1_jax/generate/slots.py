"""Independent slots over one `DecodeState`: the engine side of continuous batching (rr1_jax/serve/engine.py).

A training rollout starts every slot together (`Sampler.prefill`). A server admits requests while others are
mid-flight, so each slot must start, pause and resume on its own:

* `SlotBatch.write(starts=..., resumes=...)` (re)starts the chosen slots with new prompts and appends observations
  to others. A start first empties the slot's cache row (`valid` cleared, `end` and the RoPE position back to 0,
  turn counters reset, a fresh PRNG key from the request's seed), then runs the append logic of `Sampler.append`
  at offset 0 on a power-of-two bucket of the chosen rows, over only the first W cache entries (a started slot
  holds nothing beyond its W-wide prompt bucket, so the prompt attends over [W], not the whole cache [S]). A
  resume is `Sampler.append` itself. There is one call per (start/resume, width bucket), so an observation is
  never padded to a prompt's width. Every other slot is left bit for bit as it was; a started slot ends up as a
  fresh right-aligned prefill of its prompt would leave it (tests/serve/test_slots.py checks both).
* `SlotBatch.decode(steps)` runs one jitted segment over the slots that are active; a slot that stopped (stop
  string, EOS, per-turn budget, full cache) stays inactive until it is resumed or restarted, so a slot waiting on
  a candidate call costs nothing while the others decode.
* `SlotBatch.write(stops=...)` deactivates slots (a cancelled request) without touching their cache.

Shapes stay static: the slot count, the cache length, the width buckets and the segment length. `warmup()`
compiles every program the server can meet (each row bucket K × width bucket, for starts and for appends), so no
request pays for a compile.
"""
from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple, Sequence

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rr1_jax.generate.buckets import pad_batch, pick_bucket
from rr1_jax.generate.sampler import DecodeState, Sampler, StopReason, _append, _put_rows, _take_rows, gather_rows
from rr1_jax.model.transformer import KVCache


class SlotSegment(NamedTuple):
    """One decode segment, host side: the tokens each slot sampled and why it stopped (NONE: still running)."""

    tokens: list  # [B] lists of ids (empty for slots that did not run)
    stop_reason: np.ndarray  # [B] int StopReason; NONE for slots still decoding or idle


def _edit_rows(state: DecodeState, reset, keys, set_budget, budgets, stop) -> DecodeState:
    """reset/set_budget/stop: [B] bool; keys: [B, 2] uint32; budgets: [B] int32. Only chosen rows change."""
    cache = state.cache
    cache = cache._replace(valid=jnp.where(reset[:, None], False, cache.valid),  # [B, S]
                           end=jnp.where(reset, 0, cache.end))
    zero = jnp.zeros_like(state.next_position)
    return state._replace(
        cache=cache,
        next_position=jnp.where(reset, zero, state.next_position),
        active=state.active & ~reset & ~stop,
        keys=jnp.where(reset[:, None], keys, state.keys),
        turn_tokens=jnp.where(reset, zero, state.turn_tokens),
        turn_budget=jnp.where(set_budget, budgets, state.turn_budget),
        matcher_state=jnp.where(reset, zero, state.matcher_state),
        stop_reason=jnp.where(reset, zero, state.stop_reason),
        stop_string=jnp.where(reset, -1, state.stop_string))


def _start_rows(graphdef, params, state: DecodeState, rows, row_mask, tokens, lengths) -> DecodeState:
    """Prefill freshly reset slots: `_append` on K gathered rows (rows/row_mask/lengths [K], tokens [K, W]) over
    only the first W cache entries — a started slot holds nothing beyond them, so its prompt attends over [W]
    instead of the whole cache [S]. Padding rows (row_mask False) come back bit-identical."""
    sub = _take_rows(state, rows)  # K slots, full cache length S
    w = tokens.shape[1]
    c = sub.cache
    short = sub._replace(cache=KVCache(c.k[:, :, :w], c.v[:, :, :w], c.valid[:, :w], c.end))  # [L, K, W, KVH, D]
    short = _append(graphdef, params, short, tokens, lengths, row_mask)
    s = short.cache
    cache = KVCache(c.k.at[:, :, :w].set(s.k), c.v.at[:, :, :w].set(s.v), c.valid.at[:, :w].set(s.valid), s.end)
    return _put_rows(state, rows, short._replace(cache=cache))


def seed_key(seed: int) -> np.ndarray:
    """[2] uint32 raw PRNG key of a request seed (the same key `slot_keys` would hand a slot)."""
    return np.asarray(jax.random.PRNGKey(int(seed) % (1 << 32)), np.uint32)


class SlotBatch:
    """`num_slots` decode slots sharing one KV cache of `cache_len` entries per slot.

    `widths`: the padded widths a start or resume is written at (prompt and observation buckets together).
    Not thread-safe: one caller at a time (the serving loop runs every call in its worker thread, in order).
    """

    def __init__(self, sampler: Sampler, params, config, num_slots: int, cache_len: int, widths: Sequence[int],
                 seed: int = 0):
        if num_slots < 1 or cache_len < 1 or not widths:
            raise ValueError(f"SlotBatch needs num_slots >= 1, cache_len >= 1 and widths, got {num_slots}, "
                             f"{cache_len}, {widths}")
        if max(widths) > cache_len:
            raise ValueError(f"width bucket {max(widths)} exceeds the cache length {cache_len}")
        self.sampler, self.params, self.config = sampler, params, config
        self.num_slots, self.cache_len, self.widths = num_slots, cache_len, sorted(set(widths))
        self.state = sampler.init_state(config, num_slots, cache_len, seed=seed, turn_budget=1)
        self._edit = sampler._jit(("slot_edit",), _edit_rows, self.state)  # one jitted program per mesh
        self._start = sampler._jit(("slot_start", sampler.graphdef), functools.partial(_start_rows, sampler.graphdef),
                                   self.state)

    @property
    def pad_id(self) -> int:
        return self.sampler.pad_id

    def ends(self) -> np.ndarray:
        """[B] cache entries used per slot."""
        return np.asarray(self.state.cache.end)

    def write(self, starts: Mapping[int, Sequence[int]] = {}, resumes: Mapping[int, Sequence[int]] = {},
              budgets: Mapping[int, int] = {}, seeds: Mapping[int, int] = {}, stops: Iterable[int] = ()) -> None:
        """Start slots with prompts, resume others with observations (possibly empty), set per-turn token budgets,
        stop slots. Each started or resumed slot is active afterwards; nothing else changes."""
        stops = set(stops)
        overlap = set(starts) & set(resumes) | (set(starts) | set(resumes)) & stops
        if overlap:
            raise ValueError(f"slots {sorted(overlap)} are given more than one of start / resume / stop")
        if any(len(p) == 0 for p in starts.values()):
            raise ValueError("a started slot needs a non-empty prompt")
        b = self.num_slots
        reset = np.isin(np.arange(b), list(starts))
        set_budget = np.isin(np.arange(b), list(budgets))
        keys = np.zeros((b, 2), np.uint32)
        for slot in starts:
            keys[slot] = seed_key(seeds.get(slot, slot))
        budget = np.array([budgets.get(i, 0) for i in range(b)], np.int32)
        stop = np.isin(np.arange(b), list(stops))
        if reset.any() or set_budget.any() or stop.any():
            self.state = self._edit(self.state, jnp.asarray(reset), jnp.asarray(keys), jnp.asarray(set_budget),
                                    jnp.asarray(budget), jnp.asarray(stop))
        # one call per (kind, width bucket): an observation is never padded to a prompt's width
        for kind, rows in (("start", starts), ("resume", resumes)):
            groups: dict = {}
            for slot, ids in rows.items():
                groups.setdefault(pick_bucket(len(ids), self.widths), {})[slot] = ids
            for width in sorted(groups):
                self._write_rows(kind, groups[width], width)

    def _write_rows(self, kind: str, rows: Mapping[int, Sequence[int]], width: int) -> None:
        tokens, lengths = pad_batch([list(rows.get(i, ())) for i in range(self.num_slots)], width, self.pad_id,
                                    "right")  # [B, W], [B]
        chosen = np.isin(np.arange(self.num_slots), list(rows))
        if kind == "resume":
            self.state = self.sampler.append(self.params, self.state, tokens, lengths, chosen)
            return
        k = self.sampler.append_rows(int(chosen.sum()), self.num_slots) or self.num_slots
        picked = gather_rows(chosen, k)  # [K] the chosen slots first, then padding rows
        self.state = self._start(self.params, self.state, jnp.asarray(picked), jnp.asarray(chosen[picked]),
                                 jnp.asarray(tokens[picked]), jnp.asarray(lengths[picked]))

    def decode(self, max_steps: int) -> SlotSegment:
        """Up to `max_steps` tokens for every active slot."""
        self.state, out = self.sampler.decode_segment(self.params, self.state, max_steps)
        tokens, counts, reasons = (np.asarray(x) for x in (out.tokens, out.num_tokens, out.stop_reason))
        active = np.asarray(self.state.active)  # [B]
        reasons = np.where(active, int(StopReason.NONE), reasons)
        return SlotSegment([tokens[i, :counts[i]].tolist() for i in range(self.num_slots)], reasons)

    def warmup(self, segment_steps: int) -> None:
        """Compile the edit, the decode segment and every (row bucket, width) start and append; every slot is left
        empty and idle, as `init_state` leaves it."""
        b = self.num_slots
        buckets = {}
        for n in range(1, b + 1):
            buckets.setdefault(self.sampler.append_rows(n, b), n)
        self._clear()
        for width in self.widths:
            for n in buckets.values():
                self.write(starts={i: [self.pad_id] * width for i in range(n)})
                self._clear()
                self._write_rows("resume", {i: [] for i in range(n)}, width)
                self._clear()
        self.decode(segment_steps)  # no slot is active: the loop exits at once, but the program compiles
        jax.block_until_ready(self.state)

    def _clear(self) -> None:
        """Empty and stop every slot (keys and budgets kept)."""
        every = np.ones(self.num_slots, bool)
        self.state = self._edit(self.state, jnp.asarray(every), jnp.asarray(np.asarray(self.state.keys)),
                                jnp.asarray(~every), jnp.asarray(np.asarray(self.state.turn_budget)),
                                jnp.asarray(every))
