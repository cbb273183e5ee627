"""Length buckets: pad variable-length token lists to a few fixed widths so jitted shapes repeat."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n (static shapes: few distinct sizes)."""
    return -(-n // multiple) * multiple


def pick_bucket(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= length; a clear error if none fits."""
    fitting = [b for b in sorted(buckets) if b >= length]
    if not fitting:
        raise ValueError(f"length {length} exceeds the largest bucket {max(buckets)}; add a larger bucket to "
                         f"the config or truncate the input")
    return fitting[0]


def pad_batch(rows: Sequence[Sequence[int]], width: int, pad_id: int, align: str = "left",
              num_slots: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad rows into ([num_slots, width] int32 tokens, [num_slots] int32 lengths); missing rows are empty.

    align="left" puts pads before the tokens (prompts), "right" after them (observations).
    """
    if align not in ("left", "right"):
        raise ValueError(f"align={align!r}: use 'left' or 'right'")
    num_slots = len(rows) if num_slots is None else num_slots
    if len(rows) > num_slots:
        raise ValueError(f"{len(rows)} rows do not fit {num_slots} slots")
    tokens = np.full((num_slots, width), pad_id, np.int32)
    lengths = np.zeros((num_slots,), np.int32)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"row {i} has {len(row)} tokens, more than the bucket width {width}")
        lengths[i] = len(row)
        if len(row):
            if align == "left":
                tokens[i, width - len(row):] = row
            else:
                tokens[i, :len(row)] = row
    return tokens, lengths


def pad_to_bucket(rows: Sequence[Sequence[int]], buckets: Sequence[int], pad_id: int, align: str = "left",
                  num_slots: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`pad_batch` at the smallest bucket that holds the longest row."""
    width = pick_bucket(max((len(r) for r in rows), default=0), buckets)
    return pad_batch(rows, width, pad_id, align, num_slots)
