"""QA files named in a config (rr1_jax/data/sources.py): benchmarks from FlashRAG's layout or `name=path`,
upstream's sampling checked against Python's `random` as upstream's scripts call it, and the errors."""
import json
import random

import pytest

from rr1_jax.data.qa import DataError, QARecord, records_to_parquet
from rr1_jax.data.sources import check_source_files, distinct_ids, load_source_spec, parse_source_spec


def _flashrag(root, benchmark, split, n, ids=None):
    path = root / benchmark / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"{ids or benchmark}_{i}", "question": f"{benchmark} q{i}",
                                        "golden_answers": [f"a{i}"]}) + "\n" for i in range(n)))
    return path


def test_flashrag_layout_samples_as_upstreams_merge_scripts(tmp_path):
    nq, hotpot = _flashrag(tmp_path, "nq", "train", 30), _flashrag(tmp_path, "hotpotqa", "train", 20)
    records = load_source_spec(f"{nq}, {hotpot}", per_source=7)
    rng = random.Random(42)  # qa_train_merge.py: random.seed(42), then random.sample per source in CLI order
    want = [f"nq q{i}?" for i in rng.sample(range(30), 7)] + [f"hotpotqa q{i}?" for i in rng.sample(range(20), 7)]
    assert [r.question for r in records] == want
    assert [r.data_source for r in records] == ["nq"] * 7 + ["hotpotqa"] * 7
    assert [r.metadata["extra_info"]["index"] for r in records] == list(range(7)) * 2
    val = load_source_spec(f"{nq},{hotpot}", per_source=3, validation=True)
    assert {r.metadata["extra_info"]["split"] for r in val} == {"test"} and len(val) == 6
    every = load_source_spec(f"{nq},{hotpot}")  # per_source 0: every row, file order
    assert [r.id for r in every] == [f"nq_{i}" for i in range(30)] + [f"hotpotqa_{i}" for i in range(20)]


def test_ids_that_repeat_across_benchmarks_are_made_distinct(tmp_path):
    """FlashRAG numbers each benchmark's rows on its own: NQ's and HotpotQA's `train_0` are different questions."""
    nq, hotpot = _flashrag(tmp_path, "nq", "train", 5, ids="train"), _flashrag(tmp_path, "hotpotqa", "train", 5,
                                                                                 ids="train")
    records = load_source_spec(f"{nq},{hotpot}")
    assert [r.id for r in records] == [f"nq/train_{i}" for i in range(5)] + [f"hotpotqa/train_{i}" for i in range(5)]
    sampled = load_source_spec(f"{nq},{hotpot}", per_source=3)
    assert len({r.id for r in sampled}) == 6
    twice = [QARecord("7", "a?", ["x"], "nq"), QARecord("7", "b?", ["y"], "nq"), QARecord("8", "c?", ["z"], "nq")]
    assert [r.id for r in distinct_ids(twice)] == ["nq/7", "nq/7#1", "nq/8"]


def test_named_sources_env_vars_and_parquet(tmp_path, monkeypatch):
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"question": "who", "answer": ["me"]}) + "\n")
    monkeypatch.setenv("QA_DIR", str(tmp_path))
    assert parse_source_spec("triviaqa=$QA_DIR/questions.jsonl") == [("triviaqa", str(path))]
    [record] = load_source_spec("triviaqa=$QA_DIR/questions.jsonl")
    assert record.data_source == "triviaqa" and record.golden_answers == ["me"]
    parquet = tmp_path / "train_nh_qwen.parquet"
    rows = [QARecord("0", "q?", ["a"], "nq"), QARecord("1", "r?", ["b"], "hotpotqa")]
    records_to_parquet(rows, parquet, split="train")
    loaded = load_source_spec(str(parquet), per_source=7000)  # upstream's prepared set: taken whole
    assert [(r.question, r.data_source) for r in loaded] == [("q?", "nq"), ("r?", "hotpotqa")]


@pytest.mark.parametrize("spec, message", [
    ("data/questions.jsonl", "cannot tell which benchmark this file holds; write it as <benchmark>=<path>"),
    ("webq=a.jsonl", "cannot tell which benchmark"),
    ("nq=a.parquet", "carries its data_source per row"),
    ("nq/train.csv", "expected a .jsonl"),
])
def test_bad_entries_name_the_fix(spec, message):
    with pytest.raises(DataError, match=message):
        parse_source_spec(spec)


def test_missing_files_mixed_kinds_twice_listed_and_short_sources(tmp_path):
    nq = _flashrag(tmp_path, "nq", "train", 5)
    with pytest.raises(DataError, match=r"data.val_source: no such file: .*hotpotqa/dev.jsonl.*docs/data.md"):
        check_source_files(f"{nq},{tmp_path}/hotpotqa/dev.jsonl", "data.val_source")
    parquet = tmp_path / "p.parquet"
    records_to_parquet([QARecord("0", "q?", ["a"], "nq")], parquet, split="train")
    with pytest.raises(DataError, match="mix of JSONL and parquet"):
        check_source_files(f"{nq},{parquet}")
    with pytest.raises(DataError, match="'nq' is listed twice"):
        load_source_spec(f"{nq},nq={nq}")
    with pytest.raises(DataError, match=r"has 5 rows but 7 are sampled.*train_per_source=0 keeps every row"):
        load_source_spec(str(nq), per_source=7)


def test_a_3b_config_loads_flashrag_files(tmp_path, monkeypatch):
    from configs import qwen3b
    from rr1_jax.rl.run_setup import load_run_data
    for benchmark, split, n in (("nq", "train", 40), ("hotpotqa", "train", 30), ("nq", "test", 12),
                                ("hotpotqa", "dev", 9)):
        _flashrag(tmp_path / "data", benchmark, split, n)
    monkeypatch.chdir(tmp_path)  # the config's relative data/<benchmark>/<split>.jsonl
    c = qwen3b.get_config()
    with pytest.raises(DataError, match="has 40 rows but 7000 are sampled"):
        load_run_data(c)
    c.data.update(dict(train_per_source=25, val_per_source=8, val_size=10))
    data = load_run_data(c)
    assert len(data.train) == 50 and data.task is None
    assert [r.data_source for r in data.val] == ["nq"] * 8 + ["hotpotqa"] * 2


def test_eval_reads_a_flashrag_benchmark_by_its_folder_and_keeps_upstreams_test_subset(tmp_path):
    from configs import eval_synthetic
    from rr1_jax.eval.pipeline import load_questions
    c = eval_synthetic.get_config()
    c.dataset, c.num_questions = str(_flashrag(tmp_path, "bamboogle", "test", 600)), 0
    test, _, task = load_questions(c)
    want = random.Random(42).sample(range(600), 500)  # qa_test_gen.py: min(len, 500) rows, seed 42
    assert task is None and [r.id for r in test] == [f"bamboogle_{i}" for i in want]
    assert {r.data_source for r in test} == {"bamboogle"}
    c.test_subset, c.num_questions, c.data_source = "file", 3, "nq"  # a given data_source wins over the folder
    test, _, _ = load_questions(c)
    assert [(r.id, r.data_source) for r in test] == [(f"bamboogle_{i}", "nq") for i in range(3)]
    c.test_subset = "first"
    with pytest.raises(ValueError, match="test_subset='first'"):
        load_questions(c)
    c.test_subset, c.data_source, c.dataset = "upstream", "", str(tmp_path / "questions.jsonl")
    (tmp_path / "questions.jsonl").write_text(json.dumps({"question": "who", "answer": ["me"]}) + "\n")
    with pytest.raises(DataError, match="--dataset: .*cannot tell which benchmark"):
        load_questions(c)
