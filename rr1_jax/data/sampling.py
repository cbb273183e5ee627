"""Upstream's train/validation/test subsets, reproduced index for index (spec §3.2).

Upstream seeds Python's global ``random`` with 42 once per script run and calls
``random.sample(range(len(split)), k)`` once per source, in command-line order, so a source's sample depends on the
sources sampled before it. The subset keeps the sampled order (``datasets.select``) and each row's
``extra_info.index`` is its position in that subset. ``random.Random(42)`` reproduces the global generator exactly
without touching global state.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

from rr1_jax.data.qa import DataError, QARecord

UPSTREAM_SEED = 42
TRAIN_PER_SOURCE = 7000       # qa_train_merge.py: random.sample(range(len(train)), 7000)
VALIDATION_PER_SOURCE = 100   # qa_test_merge.py: random.sample(range(len(split)), 100)
TEST_PER_SOURCE = 500         # qa_test_gen.py: random.sample(range(len(split)), min(len(split), 500))
EVAL_SPLIT_PREFERENCE = ("test", "dev", "train")


def upstream_eval_split(available_splits: Sequence[str]) -> str:
    """The split upstream evaluates on: ``test`` if present, else ``dev``, else ``train``."""
    for split in EVAL_SPLIT_PREFERENCE:
        if split in available_splits:
            return split
    raise DataError(f"no test/dev/train split among {sorted(available_splits)}; prepare one of {EVAL_SPLIT_PREFERENCE}")


def upstream_sample_indices(source_sizes: Sequence[tuple[str, int]], per_source: int, *, cap_at_size: bool,
                            seed: int = UPSTREAM_SEED) -> dict[str, list[int]]:
    """Row indices upstream selects from each source, in the sampled order.

    ``source_sizes`` is ``[(name, number_of_rows), ...]`` in command-line order. ``cap_at_size`` reproduces the
    test script's ``min(len, per_source)``; without it a source smaller than ``per_source`` is an error (upstream
    crashes there with ``ValueError: Sample larger than population``).
    """
    rng = random.Random(seed)
    chosen: dict[str, list[int]] = {}
    for name, size in source_sizes:
        if name in chosen:
            raise DataError(f"source {name!r} is listed twice; upstream samples each source once")
        count = min(size, per_source) if cap_at_size else per_source
        if count > size:
            raise DataError(f"source {name!r} has {size} rows but {per_source} are sampled per source; "
                            f"prepare the full split (see docs/data.md) or lower the per-source count")
        chosen[name] = rng.sample(range(size), count)
    return chosen


def _select(sources: Mapping[str, Sequence[QARecord]], per_source: int, cap_at_size: bool, split: str,
            seed: int) -> list[QARecord]:
    indices = upstream_sample_indices([(name, len(rows)) for name, rows in sources.items()], per_source,
                                      cap_at_size=cap_at_size, seed=seed)
    selected = []
    for name, rows in sources.items():
        for position, row_index in enumerate(indices[name]):
            record = rows[row_index]
            extra_info = {"split": split, "index": position, "source_row": row_index}
            selected.append(record.replace(data_source=name, metadata={**record.metadata, "extra_info": extra_info}))
    return selected


def upstream_train_set(sources: Mapping[str, Sequence[QARecord]], *, per_source: int = TRAIN_PER_SOURCE,
                       seed: int = UPSTREAM_SEED) -> list[QARecord]:
    """``qa_train_merge.py``: ``per_source`` rows of each train split (insertion order = CLI order), concatenated."""
    return _select(sources, per_source, cap_at_size=False, split="train", seed=seed)


def upstream_validation_set(sources: Mapping[str, Sequence[QARecord]], *, per_source: int = VALIDATION_PER_SOURCE,
                            seed: int = UPSTREAM_SEED) -> list[QARecord]:
    """``qa_test_merge.py``: the 100-per-source validation set scored during training."""
    return _select(sources, per_source, cap_at_size=False, split="test", seed=seed)


def upstream_test_set(sources: Mapping[str, Sequence[QARecord]], *, per_source: int = TEST_PER_SOURCE,
                      seed: int = UPSTREAM_SEED) -> list[QARecord]:
    """``qa_test_gen.py``: at most ``per_source`` rows per benchmark (Bamboogle: all 125, shuffled as upstream)."""
    return _select(sources, per_source, cap_at_size=True, split="test", seed=seed)
