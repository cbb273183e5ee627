"""KV-cache generation engine: `prefill` -> `decode_segment` (until stops) -> `append` (observation) -> ...

One `DecodeState` per rollout holds a fixed number of batch slots and their KV cache; every jitted call donates it,
so the cache is allocated once and updated in place. Shapes are static: slots, cache length, prompt/observation
bucket widths and the segment length are the only shape parameters, so a rollout compiles each variant once.

Each slot keeps the logits predicted after its last written token. A decode step samples from them for every
active slot, feeds the sampled token through the model (writing its KV at the slot's own offset) and checks the
stop conditions; a stopped slot's last token is therefore already in the cache and an observation can be
appended right after it. Training uses the sampled ids and their behaviour log-probs as generated; see
`rr1_jax.generate.stops` for how this differs from upstream's decode/re-tokenise round trip.
"""
from __future__ import annotations

import enum
import functools
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from rr1_jax.generate.sampling import SamplingParams, sample_tokens, slot_keys
from rr1_jax.generate.stops import StopMatcher, advance_matcher
from rr1_jax.model.transformer import KVCache, positions_from_mask
from rr1_jax.parallel.mesh import DECODE_RULES, ShardingRules

Array = jax.Array


class StopReason(enum.IntEnum):
    """Why a slot stopped (NONE: still running, or never started this segment)."""

    NONE = 0
    EOS = 1
    STOP_STRING = 2
    BUDGET = 3
    CACHE_FULL = 4


class DecodeState(NamedTuple):
    """Everything a rollout carries between jitted calls (all leading dims are the B slots)."""

    cache: KVCache  # k/v [L, B, S, KVH, D], valid [B, S], end [B]
    logits: Array  # [B, V] f32: next-token logits after each slot's last written token
    next_position: Array  # [B] int32: RoPE position of the slot's next token (real tokens only)
    active: Array  # [B] bool: slot samples in the next decode step
    keys: Array  # [B, 2] uint32 per-slot PRNG keys
    turn_tokens: Array  # [B] int32: tokens sampled in the current turn
    turn_budget: Array  # [B] int32: per-turn token limit
    matcher_state: Array  # [B] int32: stop-string automaton state (reset every turn)
    stop_reason: Array  # [B] int32 StopReason of the last stop
    stop_string: Array  # [B] int32: index of the stop string that fired, -1 otherwise


class SegmentOutput(NamedTuple):
    """What one `decode_segment` sampled: slot b's tokens are tokens[b, :num_tokens[b]]."""

    tokens: Array  # [B, K] int32 (pad id after the slot stopped)
    logprobs: Array  # [B, K] f32 behaviour log-probs (0 after the slot stopped)
    num_tokens: Array  # [B] int32
    stop_reason: Array  # [B] int32 StopReason
    stop_string: Array  # [B] int32


def _select(mask: Array, new, old):
    """Per-slot choice between two pytrees whose leaves all have the slot axis first (not KVCache)."""
    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


_JITTED: dict = {}  # (body, static config, mesh, rules) -> jitted function; shapes are cached by jax.jit itself


class Sampler:
    """Jitted prefill / decode_segment / append over one model (graphdef), one sampling rule, one stop set."""

    def __init__(self, graphdef: nnx.GraphDef, sampling: SamplingParams = SamplingParams(greedy=True),
                 stop: Optional[StopMatcher] = None, eos_ids: Sequence[int] = (), pad_id: int = 0,
                 mesh: Optional[Mesh] = None, rules: ShardingRules = DECODE_RULES):
        self.graphdef = graphdef
        self.sampling = sampling
        self.eos_ids = tuple(int(i) for i in eos_ids)
        self.pad_id = int(pad_id)
        self.mesh, self.rules = mesh, rules
        self.stop = stop
        self._stop_table = None  # device copy of the stop table, fitted to the model vocabulary on first use

    # ---- state and shardings ----
    def init_state(self, config, num_slots: int, max_len: int, seed: int = 0,
                   turn_budget: int = 1024) -> DecodeState:
        """A fresh state: zeroed cache of `max_len` entries per slot, all slots inactive."""
        b = num_slots
        state = DecodeState(
            cache=KVCache.zeros(config, b, max_len), logits=jnp.zeros((b, config.vocab_size), jnp.float32),
            next_position=jnp.zeros((b,), jnp.int32), active=jnp.zeros((b,), bool), keys=slot_keys(seed, b),
            turn_tokens=jnp.zeros((b,), jnp.int32), turn_budget=jnp.full((b,), turn_budget, jnp.int32),
            matcher_state=jnp.zeros((b,), jnp.int32), stop_reason=jnp.zeros((b,), jnp.int32),
            stop_string=jnp.full((b,), -1, jnp.int32))
        if self.mesh is not None:
            state = jax.device_put(state, self.state_sharding(state))
        return state

    def _stop_table_for(self, vocab_size: int) -> Array:
        """The stop table padded to the model vocabulary (ids beyond the tokenizer's decode to no bytes)."""
        if self._stop_table is None:
            table = (self.stop or StopMatcher.empty(vocab_size)).table
            if table.shape[1] > vocab_size:
                raise ValueError(f"stop strings were built for {table.shape[1]} token ids but the model has "
                                 f"{vocab_size}: build the StopMatcher from this model's tokenizer")
            identity = np.repeat(np.arange(table.shape[0], dtype=table.dtype)[:, None], vocab_size - table.shape[1], 1)
            table = jnp.asarray(np.concatenate([table, identity], axis=1))
            if self.mesh is not None:
                table = jax.device_put(table, NamedSharding(self.mesh, jax.sharding.PartitionSpec()))
            self._stop_table = table
        return self._stop_table

    def _spec(self, axes, shape):
        return NamedSharding(self.mesh, self.rules.spec(axes, shape, self.mesh))

    def state_sharding(self, state: DecodeState) -> DecodeState:
        """Slots over the batch axes; cache KV heads over `tensor` when they divide it."""
        def batch(x):
            return self._spec(("batch",) + (None,) * (x.ndim - 1), x.shape)
        kv = self._spec(("layers", "batch", "length", "kv_heads", "head_dim"), state.cache.k.shape)
        cache = KVCache(kv, kv, batch(state.cache.valid), batch(state.cache.end))
        rest = {f: batch(getattr(state, f)) for f in DecodeState._fields if f != "cache"}
        return DecodeState(cache=cache, **rest)

    def _jit(self, key: tuple, fn, state_like, extra_out=None):
        """One jitted function per (body, static config, mesh), shared by every Sampler in the process."""
        key = key + (self.mesh, id(self.rules), None if self.mesh is None else state_like.active.shape[0])
        if key not in _JITTED:
            if self.mesh is None:
                _JITTED[key] = jax.jit(fn, donate_argnames=("state",))
            else:
                out = self.state_sharding(state_like)
                if extra_out is not None:
                    out = (out, extra_out(state_like))
                _JITTED[key] = jax.jit(fn, donate_argnames=("state",), out_shardings=out)
        return _JITTED[key]

    @property
    def _num_stop_states(self) -> int:
        return 1 if self.stop is None else self.stop.num_states

    # ---- public API ----
    def prefill(self, params, state: DecodeState, tokens, lengths, align: str = "left") -> DecodeState:
        """Start a rollout: write prompts tokens [B, P] (a bucket, `align`-padded) from offset 0 of every slot.

        Slots with length 0 stay inactive. Resets turn counters, stop state and the cache (no reallocation).
        """
        if align not in ("left", "right"):
            raise ValueError(f"align={align!r}: use 'left' or 'right'")
        if tokens.shape[1] > state.cache.max_len:
            raise ValueError(f"prompt bucket {tokens.shape[1]} exceeds the cache length {state.cache.max_len}")
        prefill = self._jit(("prefill", self.graphdef, align), functools.partial(_prefill, self.graphdef, align),
                            state)
        return prefill(params, state, jnp.asarray(tokens, jnp.int32), jnp.asarray(lengths, jnp.int32))

    def append(self, params, state: DecodeState, tokens, lengths, slots_mask) -> DecodeState:
        """Write right-padded tokens [B, O] for the chosen slots at each one's offset and start a new turn there.

        Unchosen slots are left exactly as they were. A chosen slot needs `cache.end + O <= S`. Only
        K = `append_rows(n chosen, B)` rows run through the model (gathered, appended, scattered back), so an append
        for a few slots costs a [K, O] forward instead of [B, O]; each K compiles once.
        """
        mask = np.asarray(slots_mask, bool)
        end = np.asarray(state.cache.end)
        room = end + np.shape(tokens)[1] > state.cache.max_len
        if np.any(room & mask):
            slots = np.flatnonzero(room & mask).tolist()
            raise ValueError(f"cache full: slots {slots} cannot take a {np.shape(tokens)[1]}-token observation "
                             f"bucket (cache length {state.cache.max_len}); allocate a larger cache")
        tokens, lengths = np.asarray(tokens, np.int32), np.asarray(lengths, np.int32)
        k = self.append_rows(int(mask.sum()), mask.shape[0])
        if k is None:
            append = self._jit(("append", self.graphdef), functools.partial(_append, self.graphdef), state)
            return append(params, state, jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(mask))
        rows = gather_rows(mask, k)  # [K] distinct slots, the chosen ones first
        sub_sharding = None if self.mesh is None else self.state_sharding
        append = self._jit(("append_rows", self.graphdef),
                           functools.partial(_append_rows, self.graphdef, sub_sharding), state)
        return append(params, state, jnp.asarray(rows), jnp.asarray(mask[rows]), jnp.asarray(tokens[rows]),
                      jnp.asarray(lengths[rows]))

    def append_rows(self, num_chosen: int, num_slots: int) -> Optional[int]:
        """The row bucket K an append of `num_chosen` slots runs on, or None for the full-batch path.

        K is the smallest power of two >= num_chosen (at least 1) that is smaller than the slot count; on a mesh
        it must also be a multiple of the batch axes' size (so the gathered rows still split over them).
        """
        shards = 1
        if self.mesh is not None:
            axes = [a for a in self.rules.mesh_axes("batch") if self.mesh.shape.get(a, 1) > 1]
            shards = int(np.prod([self.mesh.shape[a] for a in axes])) if axes else 1
            if num_slots % shards:
                shards = 1  # slots are replicated (state_sharding drops the axes): no constraint
        k = 1
        while k < num_slots:
            if k >= num_chosen and k % shards == 0:
                return k
            k *= 2
        return None

    def decode_segment(self, params, state: DecodeState, max_steps: int) -> tuple[DecodeState, SegmentOutput]:
        """Sample up to `max_steps` tokens per active slot, stopping each slot at EOS / stop string / budget /
        full cache; returns the new state and the segment's tokens, behaviour log-probs and stop reasons."""
        static = (self.graphdef, self.sampling, self.eos_ids, self.pad_id, self._num_stop_states, max_steps)
        extra = None
        if self.mesh is not None:
            def extra(s):
                b2 = self._spec(("batch", None), (s.active.shape[0], max_steps))
                b1 = self._spec(("batch",), s.active.shape)
                return SegmentOutput(b2, b2, b1, b1, b1)
        decode = self._jit(("decode",) + static, functools.partial(_decode_segment, *static), state, extra)
        return decode(params, state, self._stop_table_for(state.logits.shape[-1]))


# ----------------------------------------------------------------------------------------------------------
# jitted bodies (pure functions; graphdef/sampling/static sizes are bound with functools.partial)
# ----------------------------------------------------------------------------------------------------------
def _last_logits(model, tokens, positions, mask, cache, advance, last_index):
    """Run the chunk through the cache; logits only at each slot's `last_index` (no [B, T, V] tensor)."""
    hidden, cache = model.hidden_states(tokens, positions, mask, cache, advance)  # [B, T, E]
    last = jnp.take_along_axis(hidden, last_index[:, None, None], axis=1)[:, 0]  # [B, E]
    return model.logits_from_hidden(last), cache  # [B, V]


def _prefill(graphdef, align, params, state: DecodeState, tokens, lengths) -> DecodeState:
    model = nnx.merge(graphdef, params)
    b, t = tokens.shape
    column = jnp.arange(t)[None, :]
    if align == "left":
        mask = column >= (t - lengths)[:, None]  # [B, P]
        positions = positions_from_mask(mask)
        advance, last = jnp.full((b,), t, jnp.int32), jnp.full((b,), t - 1, jnp.int32)
    else:
        mask = column < lengths[:, None]
        positions = jnp.broadcast_to(column, (b, t)).astype(jnp.int32)
        advance, last = lengths, jnp.maximum(lengths - 1, 0)
    cache = state.cache._replace(valid=jnp.zeros_like(state.cache.valid), end=jnp.zeros_like(state.cache.end))
    logits, cache = _last_logits(model, tokens, positions, mask, cache, advance, last)
    active = lengths > 0
    return state._replace(
        cache=cache, logits=logits, next_position=lengths, active=active,
        turn_tokens=jnp.zeros_like(lengths), matcher_state=jnp.zeros_like(lengths),
        stop_reason=jnp.zeros_like(lengths), stop_string=jnp.full_like(lengths, -1))


def _append(graphdef, params, state: DecodeState, tokens, lengths, slots_mask) -> DecodeState:
    model = nnx.merge(graphdef, params)
    t = tokens.shape[1]
    lengths = jnp.where(slots_mask, lengths, 0)
    mask = jnp.arange(t)[None, :] < lengths[:, None]  # [B, O] right-padded
    positions = state.next_position[:, None] + jnp.arange(t)[None, :]
    logits, cache = _last_logits(model, tokens, positions, mask, state.cache, lengths, jnp.maximum(lengths - 1, 0))
    # unchosen slots keep their cache bit for bit; chosen slots with an empty observation keep their logits
    cache = _select_cache(slots_mask, cache, state.cache)
    zero = jnp.zeros_like(lengths)
    new_turn = state._replace(
        logits=_select(lengths > 0, logits, state.logits), next_position=state.next_position + lengths,
        active=jnp.ones_like(slots_mask), turn_tokens=zero, matcher_state=zero, stop_reason=zero,
        stop_string=jnp.full_like(lengths, -1))
    return _select(slots_mask, new_turn._replace(cache=None), state._replace(cache=None))._replace(cache=cache)


def gather_rows(mask: np.ndarray, k: int) -> np.ndarray:
    """[K] int32 distinct slot indices: every chosen slot (mask [B]) first, then unchosen ones as padding."""
    chosen, others = np.flatnonzero(mask), np.flatnonzero(~mask)
    if len(chosen) > k:
        raise ValueError(f"{len(chosen)} chosen slots do not fit a {k}-row append")
    return np.concatenate([chosen, others[:k - len(chosen)]]).astype(np.int32)


def _take_rows(state: DecodeState, rows: Array) -> DecodeState:
    """The K slots `rows` [K] of a B-slot state (cache k/v carry the slot axis second)."""
    cache = state.cache
    sub_cache = KVCache(jnp.take(cache.k, rows, axis=1), jnp.take(cache.v, rows, axis=1),
                        jnp.take(cache.valid, rows, axis=0), jnp.take(cache.end, rows, axis=0))
    rest = jax.tree.map(lambda x: jnp.take(x, rows, axis=0), state._replace(cache=None))
    return rest._replace(cache=sub_cache)


def _put_rows(state: DecodeState, rows: Array, sub: DecodeState) -> DecodeState:
    """Write the K-slot `sub` back at slots `rows` [K] (distinct) of the B-slot state; other slots untouched."""
    cache, new = state.cache, sub.cache
    full_cache = KVCache(cache.k.at[:, rows].set(new.k, unique_indices=True),
                         cache.v.at[:, rows].set(new.v, unique_indices=True),
                         cache.valid.at[rows].set(new.valid, unique_indices=True),
                         cache.end.at[rows].set(new.end, unique_indices=True))
    rest = jax.tree.map(lambda x, n: x.at[rows].set(n, unique_indices=True), state._replace(cache=None),
                        sub._replace(cache=None))
    return rest._replace(cache=full_cache)


def _append_rows(graphdef, sub_sharding, params, state: DecodeState, rows, row_mask, tokens,
                 lengths) -> DecodeState:
    """`_append` on K gathered slots. rows/row_mask/lengths: [K], tokens: [K, O]; padding rows (row_mask False)
    come back exactly as gathered, so scattering them back leaves them bit-identical."""
    sub = _take_rows(state, rows)
    if sub_sharding is not None:
        sub = jax.lax.with_sharding_constraint(sub, sub_sharding(sub))
    sub = _append(graphdef, params, sub, tokens, lengths, row_mask)
    return _put_rows(state, rows, sub)


def _select_cache(mask: Array, new: KVCache, old: KVCache) -> KVCache:
    """Per-slot choice between two caches (k/v carry the slot axis second)."""
    kv_mask = mask[None, :, None, None, None]
    return KVCache(jnp.where(kv_mask, new.k, old.k), jnp.where(kv_mask, new.v, old.v),
                   jnp.where(mask[:, None], new.valid, old.valid), jnp.where(mask, new.end, old.end))


def _decode_segment(graphdef, sampling, eos_ids, pad_id, num_stop_states, max_steps, params,
                    state: DecodeState, stop_table):
    model = nnx.merge(graphdef, params)
    b = state.active.shape[0]
    capacity = state.cache.max_len
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)
    # a slot whose cache is already full cannot take another token
    full = state.active & (state.cache.end >= capacity)
    state = state._replace(active=state.active & ~full,
                           stop_reason=jnp.where(full, int(StopReason.CACHE_FULL), state.stop_reason))
    out = SegmentOutput(jnp.full((b, max_steps), pad_id, jnp.int32), jnp.zeros((b, max_steps), jnp.float32),
                        jnp.zeros((b,), jnp.int32), state.stop_reason, state.stop_string)

    def cond(carry):
        step, st, _ = carry
        return (step < max_steps) & jnp.any(st.active)

    def body(carry):
        step, st, out = carry
        active = st.active
        ids, logprobs, keys = sample_tokens(st.logits, st.keys, sampling)
        ids = jnp.where(active, ids, pad_id)
        matcher_state, completed = advance_matcher(stop_table, num_stop_states, st.matcher_state, ids)
        logits, cache = model(ids[:, None], st.next_position[:, None], active[:, None], st.cache,
                              active.astype(jnp.int32))  # [B, 1, V]
        turn_tokens = st.turn_tokens + active
        reason = jnp.select(
            [jnp.isin(ids, eos), completed >= 0, turn_tokens >= st.turn_budget, cache.end >= capacity],
            [int(StopReason.EOS), int(StopReason.STOP_STRING), int(StopReason.BUDGET), int(StopReason.CACHE_FULL)],
            int(StopReason.NONE))
        stopped = active & (reason != int(StopReason.NONE))
        st = DecodeState(
            cache=cache, logits=_select(active, logits[:, 0], st.logits),
            next_position=st.next_position + active, active=active & ~stopped,
            keys=_select(active, keys, st.keys), turn_tokens=turn_tokens, turn_budget=st.turn_budget,
            matcher_state=jnp.where(active, matcher_state, st.matcher_state),
            stop_reason=jnp.where(stopped, reason, st.stop_reason),
            stop_string=jnp.where(stopped & (reason == int(StopReason.STOP_STRING)), completed, st.stop_string))
        out = out._replace(tokens=out.tokens.at[:, step].set(ids),
                           logprobs=out.logprobs.at[:, step].set(jnp.where(active, logprobs, 0.0)),
                           num_tokens=out.num_tokens + active)
        return step + 1, st, out

    _, state, out = jax.lax.while_loop(cond, body, (jnp.int32(0), state, out))
    return state, out._replace(stop_reason=state.stop_reason, stop_string=state.stop_string)
