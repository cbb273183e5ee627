"""Packed PPO rows (`ppo.pack_updates`): the update's forward and backward passes over real tokens, not padding.

A trajectory row is `[prompt (left-padded) | response (right-padded)]` as wide as the batch's widest episode, so a
batch of short episodes is mostly padding (the learning benchmark's rows are 26-34% real tokens), and the actor
and critic updates, `ppo_epochs` forward+backward passes each, pay for every padded position. Here each
mini-batch's episodes are laid out first-fit into fewer rows of the same width, positions restarting per episode
and attention confined to it by segment ids, and every per-token array (masks, old/ref log-probs, values,
advantages, returns) is gathered to the slot that predicts its token. Loss *sums* do not depend on the layout, so
a packed update is the padded one up to float rounding (verl calls this `use_remove_padding`). The forwards
before the update (old and reference log-probs, values) run on the whole batch packed the same way and are
scattered back to the padded layout (`to_rows`).

The layout (`PackPlan`) is computed on the host from the attention mask; the gathers run on device inside the
jitted functions. Row counts are rounded up so a run compiles few distinct shapes.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from rr1_jax.generate.buckets import round_up
from rr1_jax.rl.logprobs import chunked_target_logprobs
from rr1_jax.rl.packing import first_fit

Array = jax.Array


class PackPlan(NamedTuple):
    """Where each packed slot's token comes from. E layouts (1, or one per epoch when mini-batches are shuffled)
    × K mini-batches × G micro-batches × M rows × W slots."""

    row: np.ndarray  # [E, K, G, M, W] int32: source row in the padded batch (0 for an empty slot)
    col: np.ndarray  # [E, K, G, M, W] int32: source column in that row; -1 for an empty slot
    segments: np.ndarray  # [E, K, G, M, W] int32: 1, 2, ... per episode of the packed row; 0 for an empty slot


@struct.dataclass
class PackedPPOBatch:
    """A `PPOBatch` laid out in packed rows. Every per-token array sits at the slot that *predicts* its token,
    so slot w's log-prob, value and losses come from the hidden state at w. Leading dims [..., M, W]."""

    tokens: Array  # int32
    positions: Array  # int32: index within the slot's own episode
    segments: Array  # int32: episode id within the row, 0 = empty
    targets: Array  # int32: the next token of the slot's episode (0 where there is none)
    policy_mask: Array  # bool
    value_mask: Array  # bool
    old_logp: Array  # f32
    ref_logp: Array  # f32
    values: Array  # f32
    advantages: Array  # f32
    returns: Array  # f32


def plan_packing(attention_mask: np.ndarray, row_valid: np.ndarray, mini_batch_size: int, micro_batch_size: int,
                 orders: Optional[Sequence[np.ndarray]] = None, row_multiple: int = 2) -> PackPlan:
    """Lay out every mini-batch's episodes into packed rows as wide as the padded ones, first-fit by decreasing
    length. Mini-batch k takes rows `order[k·B:(k+1)·B]`: one layout per entry of `orders` (one per epoch when
    shuffling), or a single one of contiguous rows (the unshuffled update) when `orders` is None.

    A micro-batch holds at most `micro_batch_size` packed rows (the padded update's memory bound); when a whole
    mini-batch fits in fewer, the micro-batch shrinks to that count rounded up to `row_multiple`.
    """
    attention = np.asarray(attention_mask, bool)  # [N, T]
    n, width = attention.shape
    valid = np.asarray(row_valid, bool)
    if n % mini_batch_size:
        raise ValueError(f"batch of {n} rows is not a multiple of ppo.mini_batch_size={mini_batch_size}")
    lengths = attention.sum(axis=1)
    layouts = []  # [epoch][mini-batch][packed row] -> source rows
    for order in (orders if orders is not None else [np.arange(n)]):
        epoch = []
        for start in range(0, n, mini_batch_size):
            rows = [int(i) for i in order[start:start + mini_batch_size] if valid[i] and lengths[i]]
            rows.sort(key=lambda i: -int(lengths[i]))
            epoch.append([[rows[j] for j in members] for members in first_fit([int(lengths[i]) for i in rows], width)])
        layouts.append(epoch)
    needed = max(1, max(len(rows) for epoch in layouts for rows in epoch))
    if needed <= micro_batch_size:
        micro = min(round_up(micro_batch_size, row_multiple), round_up(needed, row_multiple))
        groups = 1
    else:
        micro, groups = micro_batch_size, -(-needed // micro_batch_size)
    shape = (len(layouts), n // mini_batch_size, groups * micro, width)
    src_row, src_col, segments = np.zeros(shape, np.int32), np.full(shape, -1, np.int32), np.zeros(shape, np.int32)
    for e, epoch in enumerate(layouts):
        for k, layout in enumerate(epoch):
            for r, members in enumerate(layout):
                start = 0
                for segment, i in enumerate(members, start=1):
                    cols = np.flatnonzero(attention[i])
                    end = start + cols.size
                    src_row[e, k, r, start:end], src_col[e, k, r, start:end] = i, cols
                    segments[e, k, r, start:end] = segment
                    start = end
    split = lambda x: x.reshape(shape[:2] + (groups, micro, width))  # noqa: E731
    return PackPlan(split(src_row), split(src_col), split(segments))


class PackedInputs(NamedTuple):
    """The model inputs of packed rows, and where each slot's per-token values live in the padded batch."""

    tokens: Array  # [..., M, W] int32
    positions: Array  # [..., M, W] int32: index within the slot's own episode
    segments: Array  # [..., M, W] int32: episode id within the row, 0 = empty
    targets: Array  # [..., M, W] int32: the next token of the slot's episode (0 where there is none)
    source_row: Array  # [..., M, W] int32: the slot's row in the padded batch
    response_index: Array  # [..., M, W] int32: the response index t whose token the slot predicts (clipped)
    in_response: Array  # [..., M, W] bool: the slot predicts a response token (t in [0, R))


def pack_inputs(tokens: Array, positions: Array, prompt_width: int, plan: PackPlan) -> PackedInputs:
    """Gather padded rows ([N, P+R] tokens and positions) into the plan's packed layout."""
    width = tokens.shape[1]
    row, col = jnp.asarray(plan.row), jnp.asarray(plan.col)  # [E, K, G, M, W]
    filled = col >= 0
    c = jnp.maximum(col, 0)
    nxt = c + 1
    t = nxt - prompt_width  # verl's alignment: response index t is predicted at absolute position P + t - 1
    return PackedInputs(
        tokens=jnp.where(filled, tokens[row, c], 0), positions=jnp.where(filled, positions[row, c], 0),
        segments=jnp.asarray(plan.segments),
        targets=jnp.where(filled & (nxt < width), tokens[row, jnp.minimum(nxt, width - 1)], 0),
        source_row=row, response_index=jnp.clip(t, 0, width - prompt_width - 1),
        in_response=filled & (t >= 0) & (t < width - prompt_width))


def to_slots(inputs: PackedInputs, x: Array) -> Array:
    """A padded per-token array [N, R] at the packed slots that predict its tokens (zero elsewhere)."""
    return jnp.where(inputs.in_response, x[inputs.source_row, inputs.response_index], jnp.zeros((), x.dtype))


def to_rows(inputs: PackedInputs, x: Array, shape: tuple[int, int]) -> Array:
    """The inverse of `to_slots`: per-slot values [..., M, W] back to a padded [N, R] array (zero elsewhere)."""
    rows = jnp.where(inputs.in_response, inputs.source_row, shape[0])  # out of range: dropped
    return jnp.zeros(shape, x.dtype).at[rows, inputs.response_index].set(x, mode="drop")


def pack_minibatches(batch, plan: PackPlan) -> PackedPPOBatch:
    """Gather a padded `PPOBatch` ([N, P+R] tokens, [N, R] per-token arrays) into the plan's packed layout."""
    inputs = pack_inputs(batch.tokens, batch.positions, batch.prompt_width, plan)
    at_slot = lambda x: to_slots(inputs, x)  # noqa: E731
    return PackedPPOBatch(
        tokens=inputs.tokens, positions=inputs.positions, segments=inputs.segments, targets=inputs.targets,
        policy_mask=at_slot(batch.policy_mask), value_mask=at_slot(batch.value_mask),
        old_logp=at_slot(batch.old_logp), ref_logp=at_slot(batch.ref_logp), values=at_slot(batch.values),
        advantages=at_slot(batch.advantages), returns=at_slot(batch.returns))


def packed_logprobs(graphdef: nnx.GraphDef, params, micro, *, temperature: float = 1.0, chunk_size: int = 256,
                    with_entropy: bool = False):
    """Log-probs (and entropies) [M, W] of each slot's next token under `(graphdef, params)`; `micro`: a
    `PackedPPOBatch` or `PackedInputs` micro-batch."""
    model = nnx.merge(graphdef, params)
    hidden, _ = model.hidden_states(micro.tokens, micro.positions, micro.segments > 0,
                                    segment_ids=micro.segments)  # [M, W, E]
    return chunked_target_logprobs(model, hidden, micro.targets, temperature=temperature, chunk_size=chunk_size,
                                   with_entropy=with_entropy)


def packed_values(graphdef: nnx.GraphDef, params, micro) -> Array:
    """Critic values [M, W] read at each slot (unmasked); `micro` as for `packed_logprobs`."""
    critic = nnx.merge(graphdef, params)
    return critic(micro.tokens, micro.positions, micro.segments > 0, segment_ids=micro.segments)


def fill_fraction(plan: PackPlan) -> float:
    """Share of packed slots holding a real token."""
    return float(np.mean(plan.col >= 0))
