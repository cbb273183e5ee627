"""The QA files a training config names (`data.source`, `data.val_source`) -> the records the run uses.

A spec is a comma-separated list of files. A `.jsonl` file (FlashRAG or NQ-open rows) needs its benchmark: write
`nq=path`, or keep FlashRAG's layout (`<dir>/nq/train.jsonl`) and the folder name says it. JSONL sources are
sampled as upstream samples them when `per_source` > 0 (seed 42, one draw per source in the listed order:
`qa_train_merge.py` for training, `qa_test_merge.py` for validation); 0 keeps every row. A `.parquet` file is
upstream's prepared (already sampled) set with a data_source per row, and is taken whole. `$VARS` and `~` expand.
"""
from __future__ import annotations

import os
from typing import Optional

from rr1_jax.data.qa import BENCHMARKS, DataError, QARecord, load_jsonl, load_parquet
from rr1_jax.data.sampling import upstream_train_set, upstream_validation_set


def parse_source_spec(spec: str, key: str = "data.source") -> list[tuple[Optional[str], str]]:
    """`"nq=a.jsonl, data/hotpotqa/train.jsonl, b.parquet"` -> [(benchmark or None for parquet, path), ...]."""
    out = []
    for entry in (e.strip() for e in str(spec).split(",")):
        if not entry:
            continue
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = None, entry
        path = os.path.expanduser(os.path.expandvars(path.strip()))
        if path.endswith(".parquet"):
            if name is not None:
                raise DataError(f"{key}: {entry!r}: a parquet file carries its data_source per row; drop '{name}='")
            out.append((None, path))
            continue
        if not path.endswith((".jsonl", ".json")):
            raise DataError(f"{key}: {entry!r}: expected a .jsonl (FlashRAG or NQ-open) or .parquet (upstream) file")
        name = (name.strip() if name is not None else os.path.basename(os.path.dirname(os.path.abspath(path))))
        if name not in BENCHMARKS:
            raise DataError(f"{key}: {entry!r}: cannot tell which benchmark this file holds; write it as "
                            f"<benchmark>=<path> with a benchmark of {BENCHMARKS} (e.g. nq={path}), or keep "
                            f"FlashRAG's <benchmark>/<split>.jsonl layout")
        out.append((name, path))
    return out


def check_source_files(spec: str, key: str = "data.source") -> list[tuple[Optional[str], str]]:
    """`parse_source_spec`, and every file exists and the spec does not mix JSONL with parquet."""
    sources = parse_source_spec(spec, key)
    missing = [path for _, path in sources if not os.path.isfile(path)]
    if missing:
        raise DataError(f"{key}: no such file: {', '.join(missing)} (relative paths start at {os.getcwd()}); "
                        f"prepare the QA files as in docs/data.md, or point --config.{key} at them")
    kinds = {name is None for name, _ in sources}
    if len(kinds) > 1:
        raise DataError(f"{key}: mix of JSONL and parquet files; give JSONL files (sampled as upstream) or upstream's "
                        f"prepared parquet files (taken whole), not both")
    return sources


def load_source_spec(spec: str, per_source: int = 0, *, validation: bool = False, strict: bool = True,
                     key: str = "data.source") -> list[QARecord]:
    """The records of `spec`: upstream's training (or, with `validation`, validation) sample of `per_source` rows
    per JSONL source, every row if `per_source` is 0; parquet files whole, in the listed order."""
    return load_sources(check_source_files(spec, key), per_source, validation=validation, strict=strict, key=key)


def load_sources(sources: list[tuple[Optional[str], str]], per_source: int = 0, *, validation: bool = False,
                 strict: bool = True, key: str = "data.source") -> list[QARecord]:
    """`load_source_spec` of sources `check_source_files` has already checked; ids made distinct."""
    return distinct_ids(_load_sources(sources, per_source, validation, strict, key))


def distinct_ids(records: list[QARecord]) -> list[QARecord]:
    """FlashRAG numbers each benchmark's rows on its own (`train_0` is an NQ and a HotpotQA question): when ids
    repeat, each becomes `<data_source>/<id>`, and any still repeated gets `#<k>`, its k-th occurrence."""
    if len({r.id for r in records}) == len(records):
        return records
    seen: dict[str, int] = {}
    out = []
    for r in records:
        new_id = f"{r.data_source}/{r.id}"
        seen[new_id] = seen.get(new_id, 0) + 1
        out.append(r.replace(id=new_id if seen[new_id] == 1 else f"{new_id}#{seen[new_id] - 1}"))
    return out


def _load_sources(sources, per_source: int, validation: bool, strict: bool, key: str) -> list[QARecord]:
    if sources and sources[0][0] is None:
        return [r for _, path in sources for r in load_parquet(path, strict=strict)]
    by_name: dict[str, list[QARecord]] = {}
    for name, path in sources:
        if name in by_name:
            raise DataError(f"{key}: benchmark {name!r} is listed twice; upstream samples each source once")
        by_name[name] = load_jsonl(path, name, strict=strict)
    if per_source <= 0:
        return [r for rows in by_name.values() for r in rows]
    sample = upstream_validation_set if validation else upstream_train_set
    try:
        return sample(by_name, per_source=per_source)
    except DataError as e:
        raise DataError(f"{key}: {e} (--config.data.{'val' if validation else 'train'}_per_source=0 keeps every "
                        f"row)") from e
