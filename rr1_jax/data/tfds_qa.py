"""Versioned, random-access QA splits built with tensorflow-datasets from local files — no TensorFlow needed.

``RouterQA`` turns ``<manual_dir>/<benchmark>/<split>.{jsonl,parquet}`` (the FlashRAG layout, splits train/dev/test)
into ArrayRecord files read back through ``as_data_source`` (random access, no ``tf.data``). Rows keep their file
order (``disable_shuffling``), so row ``i`` of a split is row ``i`` of the source file and upstream's sampling
indices (``sampling.py``) apply unchanged. Nothing here downloads: data must already be on disk (docs/data.md).
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Sequence

import tensorflow_datasets as tfds

from rr1_jax.data.qa import BENCHMARKS, DataError, QARecord, load_qa_file, upstream_question

SPLITS = ("train", "dev", "test")
FILE_SUFFIXES = (".jsonl", ".parquet")

_FEATURES = tfds.features.FeaturesDict({
    "id": tfds.features.Text(),
    "question": tfds.features.Text(),
    "golden_answers": tfds.features.Sequence(tfds.features.Text()),
    "data_source": tfds.features.Text(),
    "metadata": tfds.features.Text(),  # JSON object, kept as text so any FlashRAG metadata fits
})


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _texts(values: Any) -> list[str]:
    return [_text(v) for v in (values if values is not None else [])]


def _split_file(config_dir: str, split: str) -> str | None:
    for suffix in FILE_SUFFIXES:
        path = os.path.join(config_dir, split + suffix)
        if os.path.isfile(path):
            return path
    return None


class RouterQA(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """One builder config per Router-R1 benchmark; splits are whichever of train/dev/test files exist."""

    name = "router_qa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "QA records (id, question, golden_answers, data_source, metadata) from local files."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=b, description=f"FlashRAG '{b}' from local files")
                       for b in BENCHMARKS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place <benchmark>/<split>.jsonl (FlashRAG layout: id, question, golden_answers) or <split>.parquet "
        "(upstream Router-R1 layout) in the manual dir, split in {train, dev, test}. See docs/data.md.")

    def __init__(self, *, strict: bool = True, **kwargs: Any):
        self._strict = strict
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=_FEATURES, disable_shuffling=True,
                                     description="Router-R1 QA benchmarks as QARecord rows.")

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        config_dir = os.path.join(os.fspath(dl_manager.manual_dir), self.builder_config.name)
        found = {split: path for split in SPLITS if (path := _split_file(config_dir, split))}
        if not found:
            expected = ", ".join(os.path.join(config_dir, s + suffix) for s in SPLITS for suffix in FILE_SUFFIXES)
            raise DataError(f"no split file for '{self.builder_config.name}'; expected one of: {expected} "
                            f"(see docs/data.md for how to prepare it)")
        return {split: self._generate_examples(path) for split, path in found.items()}

    def _generate_examples(self, path: str) -> Iterator[tuple[int, dict]]:
        records = load_qa_file(path, data_source=self.builder_config.name, strict=self._strict)
        for index, record in enumerate(records):
            yield index, {"id": record.id, "question": record.question, "golden_answers": record.golden_answers,
                          "data_source": record.data_source, "metadata": json.dumps(record.metadata)}


class QARecordSource(Sequence[QARecord]):
    """Random access to one prepared split as ``QARecord``s (wraps a tfds ArrayRecord data source)."""

    def __init__(self, data_source: Any, convert: Any, where: str):
        self._source, self._convert, self._where = data_source, convert, where

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> QARecord:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a split of {len(self)} records")
        index %= len(self)
        try:
            return self._convert(self._source[index], index)
        except ValueError as err:
            raise DataError(f"{self._where} row {index}: {err}") from err


def _record_from_router_qa(example: dict, index: int) -> QARecord:
    return QARecord(id=_text(example["id"]), question=_text(example["question"]),
                    golden_answers=_texts(example["golden_answers"]), data_source=_text(example["data_source"]),
                    metadata=json.loads(_text(example["metadata"])))


def build_router_qa(benchmark: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                    strict: bool = True) -> RouterQA:
    """Prepares (once; later calls reuse it) the ArrayRecord splits of ``benchmark`` under ``data_dir``."""
    if benchmark not in BENCHMARKS:
        raise DataError(f"unknown benchmark {benchmark!r}; choose one of {BENCHMARKS}")
    config_dir = os.path.join(os.fspath(manual_dir), benchmark)
    if not os.path.isdir(config_dir):
        raise DataError(f"{config_dir} does not exist; put {benchmark}'s split files (train/dev/test .jsonl or "
                        f".parquet) there (see docs/data.md)")
    builder = RouterQA(config=benchmark, data_dir=os.fspath(data_dir), file_format="array_record", strict=strict)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder


def router_qa_split(benchmark: str, split: str, data_dir: str | os.PathLike) -> QARecordSource:
    """A prepared split (``build_router_qa`` first) as a random-access sequence of ``QARecord``."""
    builder = RouterQA(config=benchmark, data_dir=os.fspath(data_dir), file_format="array_record")
    if not builder.is_prepared():
        raise DataError(f"'{benchmark}' is not prepared under {data_dir}; run build_router_qa('{benchmark}', "
                        f"manual_dir, '{data_dir}') first")
    available = list(builder.info.splits)
    if split not in available:
        raise DataError(f"'{benchmark}' has no split {split!r} under {data_dir}; prepared splits: {available}")
    return QARecordSource(builder.as_data_source(split=split), _record_from_router_qa, f"{benchmark}/{split}")


# --- Registered tfds QA datasets (prepared elsewhere, read here) -------------------------------------------------

def _nonempty_answers(answers: list[str]) -> list[str]:
    answers = list(dict.fromkeys(a for a in answers if a.strip()))
    if not answers:
        raise ValueError("no answers (unlabelled split? use one with answers, e.g. 'validation')")
    return answers


def _record_from_nq_open(example: dict, index: int, split: str) -> QARecord:
    return QARecord(id=f"natural_questions_open_{split}_{index}",
                    question=upstream_question(_text(example["question"])),
                    golden_answers=_nonempty_answers(_texts(example["answer"])), data_source="nq")


def _record_from_trivia_qa(example: dict, index: int, split: str) -> QARecord:
    answer = example["answer"]
    answers = [_text(answer["value"])] + _texts(answer["aliases"])
    return QARecord(id=_text(example["question_id"]), question=upstream_question(_text(example["question"])),
                    golden_answers=_nonempty_answers(answers), data_source="triviaqa",
                    metadata={"question_source": _text(example.get("question_source", b""))})


REGISTERED_QA_BUILDERS = {"natural_questions_open": _record_from_nq_open, "trivia_qa": _record_from_trivia_qa}
# TriviaQA configs in order of preference for open-domain QA (FlashRAG's triviaqa is the unfiltered set).
TRIVIA_QA_CONFIG_PREFERENCE = ("unfiltered.nocontext", "rc.nocontext", "unfiltered", "rc")


def default_tfds_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def _prepared_dirs(root: str) -> list[str]:
    """``<root>[/<config>]/<version>`` directories holding a finished ``dataset_info.json``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "dataset_info.json" in filenames and "incomplete" not in os.path.basename(dirpath):
            found.append(dirpath)
        if os.path.relpath(dirpath, root).count(os.sep) >= 1:
            dirnames[:] = []  # at most <config>/<version>: never walk into big trees
    return found


def _find_prepared(name: str, config: str | None, data_dir: str) -> str:
    root = os.path.join(data_dir, name)
    prepared = _prepared_dirs(root) if os.path.isdir(root) else []
    how = (f"prepare it on a machine with network access with "
           f"`tfds build {name}{'/' + (config or TRIVIA_QA_CONFIG_PREFERENCE[0]) if name == 'trivia_qa' else ''} "
           f"--file_format=array_record --data_dir={data_dir}` and copy {root} here (docs/data.md)")
    if not prepared:
        raise DataError(f"tfds dataset '{name}' is not prepared under {data_dir}: {how}")
    by_config: dict[str, list[str]] = {}
    for path in prepared:
        parent = os.path.dirname(path)
        by_config.setdefault("" if parent == root else os.path.basename(parent), []).append(path)
    if config is None:
        order = TRIVIA_QA_CONFIG_PREFERENCE if name == "trivia_qa" else ("",)
        config = next((c for c in order if c in by_config), None)
        if config is None:
            raise DataError(f"tfds dataset '{name}' under {root} has configs {sorted(by_config)}; pass config=")
    if config not in by_config:
        raise DataError(f"tfds dataset '{name}' has no prepared config {config!r} under {root} "
                        f"(found {sorted(by_config)}): {how}")
    return max(by_config[config], key=lambda p: _version_key(os.path.basename(p)))


def registered_qa_split(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                        config: str | None = None) -> QARecordSource:
    """``natural_questions_open`` / ``trivia_qa`` prepared locally (ArrayRecord), as ``QARecord``s.

    Looks for the prepared files on disk first and never calls anything that downloads (offline, tfds retries
    downloads for minutes); absent data is one clear error naming the ``tfds build`` command to run elsewhere.
    """
    if name not in REGISTERED_QA_BUILDERS:
        raise DataError(f"no QARecord adapter for tfds dataset {name!r}; supported: {sorted(REGISTERED_QA_BUILDERS)}")
    data_dir = os.fspath(data_dir) if data_dir is not None else default_tfds_data_dir()
    path = _find_prepared(name, config, data_dir)
    builder = tfds.builder_from_directory(path)
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise DataError(f"{path} was prepared as {builder.info.file_format.value}, which needs TensorFlow to read; "
                        f"re-prepare it with `tfds build {name} --file_format=array_record`")
    available = list(builder.info.splits)
    if split not in available:
        raise DataError(f"{path} has no split {split!r}; prepared splits: {available}")
    convert = REGISTERED_QA_BUILDERS[name]
    return QARecordSource(builder.as_data_source(split=split), lambda ex, i: convert(ex, i, split), f"{path} {split}")
