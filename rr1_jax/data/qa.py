"""QA records and loaders for the three on-disk layouts Router-R1 data comes in.

Layouts: FlashRAG JSONL (``{"id", "question", "golden_answers", "metadata"?}``), NQ-open JSONL
(``{"question", "answer": [...]}``) and upstream's prepared parquet (``data_source``, ``prompt``,
``reward_model.ground_truth.target``, ``extra_info``). Every malformed row is reported with its file and line:
``strict=True`` raises one ``DataError`` for the first bad row, ``strict=False`` skips bad rows and emits one
warning that counts and lists them. Nothing is ever guessed or silently coerced.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any, Iterable, Iterator

# The seven FlashRAG configs upstream's reward accepts as `data_source` (spec §3.1).
BENCHMARKS = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
JSONL_LAYOUTS = ("auto", "flashrag", "nq_open")
_MAX_LISTED_PROBLEMS = 10


class DataError(ValueError):
    """A user-fixable problem with a data file; the message names the file, the line/row and the fix."""


@dataclasses.dataclass(frozen=True)
class QARecord:
    """One question with its accepted answers; ``data_source`` selects the benchmark it is scored under."""

    id: str
    question: str
    golden_answers: list[str]
    data_source: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def replace(self, **changes: Any) -> "QARecord":
        return dataclasses.replace(self, **changes)


def upstream_question(question: str) -> str:
    """Upstream's only question preprocessing: strip, then append ``?`` unless it already ends with one."""
    question = question.strip()
    if not question:
        raise ValueError("question is empty after stripping whitespace")
    return question if question[-1] == "?" else question + "?"


class _Problems:
    """Collects malformed-row reports; raises on the first one in strict mode, warns once at the end otherwise."""

    def __init__(self, path: str, strict: bool):
        self.path, self.strict, self.messages = path, strict, []

    def report(self, where: str, reason: str) -> None:
        message = f"{self.path}:{where}: {reason}"
        if self.strict:
            raise DataError(message + " (fix the row, or load with strict=False to skip malformed rows)")
        self.messages.append(message)

    def warn_if_any(self) -> None:
        if not self.messages:
            return
        listed = "\n  ".join(self.messages[:_MAX_LISTED_PROBLEMS])
        more = len(self.messages) - _MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        warnings.warn(f"{self.path}: skipped {len(self.messages)} malformed rows:\n  {listed}{tail}", stacklevel=3)


def _check_question(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'question' must be a string, got {type(value).__name__}")
    return upstream_question(value)


def _check_answers(value: Any, field: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"'{field}' must be a list of strings, got {type(value).__name__}")
    if not value:
        raise ValueError(f"'{field}' is empty (a question needs at least one accepted answer)")
    for answer in value:
        if not isinstance(answer, str):
            raise ValueError(f"'{field}' must hold only strings, found {type(answer).__name__} {answer!r}")
        if not answer.strip():
            raise ValueError(f"'{field}' holds an empty answer string")
    return list(value)


def _check_id(value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"'id' must be a string or an integer, got {type(value).__name__}")
    return str(value)


def _row_from_flashrag(row: dict, data_source: str, line_no: int) -> QARecord:
    if "question" not in row or "golden_answers" not in row:
        missing = [k for k in ("question", "golden_answers") if k not in row]
        raise ValueError(f"missing field(s) {missing}; a FlashRAG row needs 'question' and 'golden_answers'")
    metadata = row.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(f"'metadata' must be an object, got {type(metadata).__name__}")
    return QARecord(id=_check_id(row.get("id"), f"{data_source}_{line_no}"), question=_check_question(row["question"]),
                    golden_answers=_check_answers(row["golden_answers"], "golden_answers"),
                    data_source=data_source, metadata=dict(metadata))


def _row_from_nq_open(row: dict, data_source: str, line_no: int) -> QARecord:
    if "question" not in row or "answer" not in row:
        missing = [k for k in ("question", "answer") if k not in row]
        raise ValueError(f"missing field(s) {missing}; an NQ-open row needs 'question' and 'answer'")
    extra = {k: v for k, v in row.items() if k not in ("id", "question", "answer")}
    return QARecord(id=_check_id(row.get("id"), f"{data_source}_{line_no}"), question=_check_question(row["question"]),
                    golden_answers=_check_answers(row["answer"], "answer"), data_source=data_source,
                    metadata=extra)


def _detect_layout(row: dict) -> str:
    if "golden_answers" in row:
        return "flashrag"
    if "answer" in row:
        return "nq_open"
    raise ValueError("cannot tell the layout: the row has neither 'golden_answers' (FlashRAG) nor 'answer' (NQ-open)")


def iter_jsonl(path: str | os.PathLike, data_source: str, *, layout: str = "auto",
               strict: bool = True) -> Iterator[QARecord]:
    """Yields records of a FlashRAG or NQ-open JSONL file; ``layout="auto"`` decides from the first valid row."""
    path = os.fspath(path)
    if layout not in JSONL_LAYOUTS:
        raise ValueError(f"layout must be one of {JSONL_LAYOUTS}, got {layout!r}")
    if not isinstance(data_source, str) or not data_source:
        raise ValueError(f"data_source must be a non-empty string (e.g. 'nq'), got {data_source!r}")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (check the path; see docs/data.md for how to prepare QA files)")
    problems = _Problems(path, strict)
    parsers = {"flashrag": _row_from_flashrag, "nq_open": _row_from_nq_open}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                problems.report(f"line {line_no}", f"invalid JSON ({err.msg} at column {err.colno})")
                continue
            try:
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                if layout == "auto":
                    layout = _detect_layout(row)
                yield parsers[layout](row, data_source, line_no)
            except ValueError as err:
                problems.report(f"line {line_no}", str(err))
    problems.warn_if_any()


def load_jsonl(path: str | os.PathLike, data_source: str, *, layout: str = "auto",
               strict: bool = True) -> list[QARecord]:
    """All records of a FlashRAG or NQ-open JSONL file (see ``iter_jsonl``)."""
    return list(iter_jsonl(path, data_source, layout=layout, strict=strict))


def _question_from_prompt(prompt: Any) -> str:
    """Recovers the question from an upstream prompt (``[{"role": "user", "content": "...Question: q\\n\\n"}]``)."""
    if not isinstance(prompt, (list, tuple)) or not prompt or not isinstance(prompt[-1], dict):
        raise ValueError("'prompt' must be a non-empty list of {role, content} messages")
    content = prompt[-1].get("content")
    marker = "Question: "
    if not isinstance(content, str) or marker not in content:
        raise ValueError("'prompt' content does not contain 'Question: ' (not an upstream Router-R1 prompt)")
    return content[content.rindex(marker) + len(marker):]


def _row_from_parquet(row: dict, row_no: int) -> QARecord:
    data_source = row.get("data_source")
    if not isinstance(data_source, str) or not data_source:
        raise ValueError("'data_source' must be a non-empty string")
    reward_model = row.get("reward_model")
    ground_truth = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if not isinstance(ground_truth, dict) or "target" not in ground_truth:
        raise ValueError("missing 'reward_model.ground_truth.target' (the list of golden answers)")
    answers = _check_answers(ground_truth["target"], "reward_model.ground_truth.target")
    raw_question = row.get("question")
    question = _check_question(raw_question if raw_question is not None else _question_from_prompt(row.get("prompt")))
    extra_info = row.get("extra_info") or {}
    if not isinstance(extra_info, dict):
        raise ValueError(f"'extra_info' must be a struct, got {type(extra_info).__name__}")
    default_id = f"{data_source}_{extra_info.get('split', 'row')}_{extra_info.get('index', row_no)}"
    metadata = {"extra_info": dict(extra_info)}
    if isinstance(row.get("metadata"), dict):
        metadata.update(row["metadata"])
    return QARecord(id=_check_id(row.get("id"), default_id), question=question, golden_answers=answers,
                    data_source=data_source, metadata=metadata)


def load_parquet(path: str | os.PathLike, *, strict: bool = True) -> list[QARecord]:
    """Records of an upstream Router-R1 parquet file (``train_nh_qwen.parquet``, ``test_nq_qwen.parquet``, ...)."""
    import pyarrow.parquet as pq

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (check the path; see docs/data.md for how to prepare QA files)")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise DataError(f"{path}: not a readable parquet file ({err})") from err
    problems = _Problems(path, strict)
    records = []
    for row_no, row in enumerate(rows):
        try:
            records.append(_row_from_parquet(row, row_no))
        except ValueError as err:
            problems.report(f"row {row_no}", str(err))
    problems.warn_if_any()
    return records


def records_to_parquet(records: Iterable[QARecord], path: str | os.PathLike, *, split: str,
                       prompt_template: str | None = None) -> None:
    """Writes records in upstream's parquet layout; ``prompt_template`` (with ``{question}``) fills ``prompt``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for index, record in enumerate(records):
        content = prompt_template.format_map({"question": record.question}) if prompt_template else record.question
        rows.append({
            "id": record.id, "question": record.question, "golden_answers": list(record.golden_answers),
            "data_source": record.data_source, "prompt": [{"role": "user", "content": content}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": list(record.golden_answers)}},
            "extra_info": {"split": split, "index": index},
        })
    pq.write_table(pa.Table.from_pylist(rows), os.fspath(path))


def load_qa_file(path: str | os.PathLike, data_source: str | None = None, *, strict: bool = True) -> list[QARecord]:
    """Loads ``.parquet`` (upstream layout) or ``.jsonl`` (FlashRAG / NQ-open, needs ``data_source``) by suffix."""
    path = os.fspath(path)
    if path.endswith(".parquet"):
        records = load_parquet(path, strict=strict)
        return [r.replace(data_source=data_source) for r in records] if data_source else records
    if path.endswith((".jsonl", ".json")):
        if data_source is None:
            raise DataError(f"{path}: JSONL files carry no data_source; pass data_source= (one of {BENCHMARKS})")
        return load_jsonl(path, data_source, strict=strict)
    raise DataError(f"{path}: unknown file type; expected .jsonl (FlashRAG or NQ-open) or .parquet (upstream layout)")
