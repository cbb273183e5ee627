"""Deterministic, resumable, per-host sharded batches of QA records with padded, masked dummy rows.

Every epoch the whole record list is permuted by ``(seed, epoch)`` (identical on all hosts); host ``p`` of ``P``
takes every ``P``-th row of that permutation. Each host's shard is padded to the same length so all hosts run the
same number of steps (a multi-host jitted step must not deadlock), and the last batch is padded to a multiple of
``pad_multiple`` (the mesh's data-parallel size). Padding rows repeat a real record and have ``valid == False``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Sequence

import numpy as np

from rr1_jax.data.qa import QARecord


@dataclasses.dataclass(frozen=True)
class QABatch:
    """``records[i]`` is a real row iff ``valid[i]``; padding rows repeat a real record so they tokenize normally."""

    records: list[QARecord]
    valid: np.ndarray  # [B] bool

    def __len__(self) -> int:
        return len(self.records)


def _default_process(index: int | None, count: int | None) -> tuple[int, int]:
    if index is None or count is None:
        import jax  # lazy: only needed when the caller does not say which host this is

        index = jax.process_index() if index is None else index
        count = jax.process_count() if count is None else count
    if not 0 <= index < count:
        raise ValueError(f"process_index must be in [0, process_count={count}), got {index}")
    return index, count


class QABatchIterator:
    """Batches of ``batch_size`` host-local rows, forever or for ``num_epochs``; ``state_dict`` resumes exactly.

    ``batch_size`` is per host. With ``drop_remainder`` the short last batch of an epoch is dropped instead of padded.
    """

    def __init__(self, records: Sequence[QARecord], batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, process_index: int | None = None, process_count: int | None = None,
                 pad_multiple: int = 1, drop_remainder: bool = False):
        if not records:
            raise ValueError("QABatchIterator needs at least one record (the data file loaded empty?)")
        if batch_size <= 0 or pad_multiple <= 0:
            raise ValueError(f"batch_size and pad_multiple must be positive, got {batch_size} and {pad_multiple}")
        if batch_size % pad_multiple:
            raise ValueError(f"batch_size {batch_size} must be a multiple of pad_multiple {pad_multiple} "
                             f"(the mesh's data-parallel size) so full batches shard evenly")
        self._records = list(records)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.num_epochs, self.pad_multiple, self.drop_remainder = num_epochs, pad_multiple, drop_remainder
        self.process_index, self.process_count = _default_process(process_index, process_count)
        self.shard_size = math.ceil(len(self._records) / self.process_count)  # same on every host
        self.epoch, self.position = 0, 0
        self._order = self._shard_order(0)

    def _shard_order(self, epoch: int) -> np.ndarray:
        """Record indices of this host for ``epoch``; -1 marks a padding slot (the shard is shorter than others)."""
        n = len(self._records)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            order = np.arange(n)
        shard = order[self.process_index::self.process_count]
        return np.concatenate([shard, -np.ones(self.shard_size - len(shard), dtype=shard.dtype)])

    def __iter__(self) -> Iterator[QABatch]:
        return self

    def __next__(self) -> QABatch:
        if self.position >= self.shard_size or (
                self.drop_remainder and self.shard_size - self.position < self.batch_size):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._shard_order(self.epoch)
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        if self.drop_remainder and self.shard_size < self.batch_size:
            raise ValueError(f"drop_remainder with batch_size {self.batch_size} > host shard size "
                             f"{self.shard_size}: every batch would be dropped; lower batch_size")
        chosen = self._order[self.position:self.position + self.batch_size]
        self.position += len(chosen)
        width = min(self.batch_size, math.ceil(len(chosen) / self.pad_multiple) * self.pad_multiple)
        slots = np.concatenate([chosen, -np.ones(width - len(chosen), dtype=chosen.dtype)])
        valid = slots >= 0
        real = chosen[chosen >= 0]
        filler = self._records[int(real[0])] if len(real) else self._records[0]
        records = [self._records[int(i)] if i >= 0 else filler for i in slots]
        return QABatch(records=records, valid=valid)

    def state_dict(self) -> dict[str, Any]:
        """Plain ints only, so it checkpoints anywhere; the data itself is not included."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_records": len(self._records), "process_index": self.process_index,
                "process_count": self.process_count, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "num_records", "process_index", "process_count"):
            mine = self.state_dict()[key]
            if int(state[key]) != mine:
                raise ValueError(f"cannot resume data iteration: checkpoint has {key}={state[key]} but this "
                                 f"iterator has {key}={mine}; resume with the same data, seed and host layout")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._shard_order(self.epoch)
