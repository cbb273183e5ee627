"""Packed rows for supervised training: several sequences share one row, each attending only to itself.

SFT rows are `[prompt (left-padded) | response (right-padded)]`, sized for the longest sequence of the whole set,
and a step costs in proportion to that padded width: the demo's demonstrations fill 44% of their rows, its copy
rows 62%. Packing a step's sequences first-fit into fewer rows of a fixed width, with positions restarting at 0
per sequence and attention confined to it (segment ids), gives the same loss and gradients on fewer tokens.
Row counts are rounded up to a multiple, so a run compiles one program per distinct count, a handful in all.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from rr1_jax.generate.buckets import round_up
from rr1_jax.rollout.trajectory import Trajectories


class TokenSequence(NamedTuple):
    """One unpadded training sequence: its token ids and which of them carry the loss."""

    ids: np.ndarray  # [L] int32
    loss: np.ndarray  # [L] bool: token j is a target (predicted from position j - 1)


class PackedBatch(NamedTuple):
    """Sequences packed into rows; unused positions hold the pad id with segment 0."""

    tokens: np.ndarray  # [R, W] int32
    positions: np.ndarray  # [R, W] int32: index within the token's own sequence
    segments: np.ndarray  # [R, W] int32: 1, 2, ... per sequence of the row; 0 for padding
    predict_index: np.ndarray  # [R, K] int32: positions whose next token is a target; -1 pads


def unpadded_sequences(traj: Trajectories) -> list[TokenSequence]:
    """The real tokens of every row of a host-side `Trajectories` (padding rows give empty sequences)."""
    attention = np.asarray(traj.attention_mask)
    loss = np.concatenate([np.zeros((attention.shape[0], traj.prompt_width), bool), np.asarray(traj.loss_mask)],
                          axis=1)  # [N, P+R]
    tokens = np.asarray(traj.tokens)
    valid = np.asarray(traj.row_valid)
    return [TokenSequence(tokens[i][attention[i]], loss[i][attention[i]]) if valid[i]
            else TokenSequence(np.zeros((0,), np.int32), np.zeros((0,), bool)) for i in range(tokens.shape[0])]


def packed_width(traj: Trajectories, multiple: int = 64) -> int:
    """The width packed rows of `traj` get: its padded row width, rounded up to `multiple`."""
    return round_up(traj.tokens.shape[1], multiple)


def first_fit(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices (into `lengths`) of the sequences each row holds, rows filled first-fit in the given order."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i, n in enumerate(lengths):
        if n > width:
            raise ValueError(f"a sequence of {n} tokens does not fit a packed row of {width}: pack into wider rows")
        for r, room in enumerate(free):
            if room >= n:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(width - n)
    return rows


def pack(sequences: Sequence[TokenSequence], width: int, pad_id: int, num_rows: int, num_targets: int) -> PackedBatch:
    """Pack `sequences` first-fit into `num_rows` rows of `width` tokens, `num_targets` target slots per row."""
    kept = [s for s in sequences if len(s.ids)]
    return _fill_rows(kept, first_fit([len(s.ids) for s in kept], width), width, pad_id, num_rows, num_targets)


def _fill_rows(kept: Sequence[TokenSequence], layout: list[list[int]], width: int, pad_id: int, num_rows: int,
               num_targets: int) -> PackedBatch:
    """The arrays of `layout` (`first_fit`'s rows of indices into `kept`)."""
    if len(layout) > num_rows:
        raise ValueError(f"{len(layout)} packed rows needed, only {num_rows} allowed")
    tokens = np.full((num_rows, width), pad_id, np.int32)
    positions = np.zeros((num_rows, width), np.int32)
    segments = np.zeros((num_rows, width), np.int32)
    predict = np.full((num_rows, num_targets), -1, np.int32)
    for r, members in enumerate(layout):
        start, targets = 0, []
        for segment, i in enumerate(members, start=1):
            ids, loss = kept[i]
            end = start + len(ids)
            tokens[r, start:end] = ids
            positions[r, start:end] = np.arange(len(ids))
            segments[r, start:end] = segment
            targets.append(start + np.flatnonzero(loss[1:]))  # position j - 1 predicts target j (j >= 1)
            start = end
        targets = np.concatenate(targets)
        if targets.size > num_targets:
            raise ValueError(f"a packed row has {targets.size} targets, only {num_targets} slots")
        predict[r, :targets.size] = targets
    return PackedBatch(tokens, positions, segments, predict)


def pack_steps(sequences: Sequence[TokenSequence], steps: Sequence[np.ndarray], width: int, pad_id: int,
               row_multiple: int = 2, target_multiple: int = 16) -> list[PackedBatch]:
    """One `PackedBatch` per step (`steps[k]`: the sequence indices of step k), every batch with the same number
    of target slots and a row count rounded up to `row_multiple` (few distinct shapes, so few compiles)."""
    layouts, most_targets = [], 0
    for index in steps:
        chosen = [sequences[i] for i in index if len(sequences[i].ids)]
        layout = first_fit([len(s.ids) for s in chosen], width)
        layouts.append((chosen, layout, round_up(len(layout), row_multiple)))
        for members in layout:
            most_targets = max(most_targets, sum(int(chosen[i].loss[1:].sum()) for i in members))
    num_targets = max(target_multiple, round_up(most_targets, target_multiple))
    return [_fill_rows(chosen, layout, width, pad_id, rows, num_targets) for chosen, layout, rows in layouts]
