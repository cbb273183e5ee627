"""Loaders: FlashRAG / NQ-open JSONL and upstream parquet, malformed rows in strict and lenient mode."""
import json
import warnings

import pytest

from rr1_jax.data.qa import DataError, QARecord, load_jsonl, load_parquet, load_qa_file, records_to_parquet, \
    upstream_question


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_upstream_question_rule():
    assert upstream_question("  who wrote hamlet ") == "who wrote hamlet?"
    assert upstream_question("who wrote hamlet?\n") == "who wrote hamlet?"
    assert upstream_question("where is it?!") == "where is it?!?"  # only the last character is tested
    with pytest.raises(ValueError, match="empty"):
        upstream_question("   ")


def test_flashrag_jsonl(tmp_path):
    path = _write_lines(tmp_path / "dev.jsonl", [
        json.dumps({"id": "dev_0", "question": "who wrote hamlet", "golden_answers": ["Shakespeare", "W. S."],
                    "metadata": {"type": "person"}}),
        "",
        json.dumps({"id": 7, "question": "capital of france?", "golden_answers": ["Paris"]}),
    ])
    records = load_jsonl(path, "hotpotqa")
    assert records == [
        QARecord("dev_0", "who wrote hamlet?", ["Shakespeare", "W. S."], "hotpotqa", {"type": "person"}),
        QARecord("7", "capital of france?", ["Paris"], "hotpotqa", {}),
    ]


def test_nq_open_jsonl(tmp_path):
    path = _write_lines(tmp_path / "nq-open.jsonl", [
        json.dumps({"question": "when was the eiffel tower built", "answer": ["1889", "1887"]}),
        json.dumps({"question": "who is x?", "answer": ["Y"], "id": "q2"}),
    ])
    records = load_jsonl(path, "nq")
    assert [r.golden_answers for r in records] == [["1889", "1887"], ["Y"]]
    assert records[0].question == "when was the eiffel tower built?"
    assert [r.id for r in records] == ["nq_1", "q2"]  # missing ids become <source>_<line>
    with pytest.raises(DataError, match="needs 'question' and 'golden_answers'"):
        load_jsonl(path, "nq", layout="flashrag")


MALFORMED = [
    json.dumps({"id": "a", "question": "good one", "golden_answers": ["x"]}),     # line 1 ok
    json.dumps({"id": "b", "golden_answers": ["x"]}),                              # line 2 missing question
    json.dumps({"id": "c", "question": "q", "golden_answers": []}),                # line 3 empty answers
    json.dumps({"id": "d", "question": 5, "golden_answers": ["x"]}),               # line 4 wrong type
    '{"id": "e", "question": "broken',                                            # line 5 bad JSON
    json.dumps({"id": "f", "question": "q", "golden_answers": "x"}),               # line 6 answers not a list
    json.dumps(["not", "an", "object"]),                                           # line 7 not an object
    json.dumps({"id": "g", "question": "also good", "golden_answers": ["y", "z"]}),  # line 8 ok
]


def test_malformed_strict_names_file_and_line(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", MALFORMED)
    with pytest.raises(DataError) as info:
        load_jsonl(path, "nq")
    message = str(info.value)
    assert f"{path}:line 2:" in message and "question" in message and "strict=False" in message


@pytest.mark.parametrize("line, reason", [(2, "missing field"), (3, "is empty"), (4, "must be a string"),
                                          (5, "invalid JSON"), (6, "must be a list"), (7, "JSON object")])
def test_each_malformed_row_is_rejected_in_strict_mode(tmp_path, line, reason):
    path = _write_lines(tmp_path / "one_bad.jsonl", [MALFORMED[0], MALFORMED[line - 1]])
    with pytest.raises(DataError, match=f"one_bad.jsonl:line 2: .*{reason}"):
        load_jsonl(path, "nq")


def test_malformed_lenient_skips_and_counts(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", MALFORMED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_jsonl(path, "nq", strict=False)
    assert [r.id for r in records] == ["a", "g"]
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "skipped 6 malformed rows" in text
    for line in (2, 3, 4, 5, 6, 7):
        assert f"bad.jsonl:line {line}:" in text


def test_parquet_round_trip(tmp_path):
    records = [QARecord("nq_0", "who is a?", ["A", "a a"], "nq"), QARecord("hp_0", "what is b?", ["B"], "hotpotqa")]
    path = tmp_path / "train.parquet"
    records_to_parquet(records, path, split="train", prompt_template="\nAnswer it. Question: {question}\n\n")
    loaded = load_parquet(path)
    assert [(r.id, r.question, r.golden_answers, r.data_source) for r in loaded] == [
        (r.id, r.question, r.golden_answers, r.data_source) for r in records]
    assert loaded[1].metadata["extra_info"] == {"split": "train", "index": 1}
    assert load_qa_file(path) == loaded


def test_parquet_upstream_layout_without_question_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"data_source": "nq", "prompt": [{"role": "user", "content": "\nAnswer... Question: who is c?\n\n"}],
             "ability": "fact-reasoning", "reward_model": {"style": "rule", "ground_truth": {"target": ["C"]}},
             "extra_info": {"split": "test", "index": 3}},
            {"data_source": "nq", "prompt": [{"role": "user", "content": "Question: who is d?"}],
             "ability": "fact-reasoning", "reward_model": {"style": "rule", "ground_truth": {"target": []}},
             "extra_info": {"split": "test", "index": 4}}]
    path = tmp_path / "test_nq_qwen.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=r"test_nq_qwen.parquet:row 1: .*ground_truth.target' is empty"):
        load_parquet(path)
    with pytest.warns(UserWarning, match="skipped 1 malformed rows"):
        (record,) = load_parquet(path, strict=False)
    assert (record.id, record.question, record.golden_answers) == ("nq_test_3", "who is c?", ["C"])


def test_load_qa_file_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_qa_file(tmp_path / "missing.jsonl", "nq")
    path = _write_lines(tmp_path / "x.jsonl", [MALFORMED[0]])
    with pytest.raises(DataError, match="pass data_source="):
        load_qa_file(path)
    (tmp_path / "x.csv").write_text("q,a\n")
    with pytest.raises(DataError, match="unknown file type"):
        load_qa_file(tmp_path / "x.csv", "nq")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a readable parquet file"):
        load_qa_file(tmp_path / "junk.parquet")
