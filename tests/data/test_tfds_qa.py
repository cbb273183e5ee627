"""tfds builds and random reads without TensorFlow; adapters for registered datasets read only local data."""
import json
import sys
import time

import pytest
import tensorflow_datasets as tfds

from rr1_jax.data.qa import DataError, QARecord
from rr1_jax.data.tfds_qa import build_router_qa, registered_qa_split, router_qa_split


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_build_and_random_read_without_tensorflow(tmp_path):
    manual, data = tmp_path / "manual", tmp_path / "tfds"
    dev = [{"id": f"dev_{i}", "question": f"question {i}", "golden_answers": [f"a{i}", "b"],
            "metadata": {"hops": i}} for i in range(12)]
    _write_jsonl(manual / "hotpotqa" / "dev.jsonl", dev)
    _write_jsonl(manual / "hotpotqa" / "train.jsonl", dev[:3])
    builder = build_router_qa("hotpotqa", manual, data)
    assert str(builder.info.version) == "1.0.0" and set(builder.info.splits) == {"dev", "train"}
    split = router_qa_split("hotpotqa", "dev", data)
    assert len(split) == 12
    assert split[7] == QARecord("dev_7", "question 7?", ["a7", "b"], "hotpotqa", {"hops": 7})
    assert [split[i].id for i in (11, 0, 5)] == ["dev_11", "dev_0", "dev_5"]  # file order kept
    assert split[-1].id == "dev_11"
    with pytest.raises(IndexError):
        split[12]
    assert "tensorflow" not in sys.modules


def test_build_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match=r"manual/popqa does not exist"):
        build_router_qa("popqa", tmp_path / "manual", tmp_path / "tfds")
    (tmp_path / "manual" / "nq").mkdir(parents=True)
    (tmp_path / "manual" / "nq" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no split file for 'nq'; expected one of: .*nq/train.jsonl"):
        build_router_qa("nq", tmp_path / "manual", tmp_path / "tfds")
    with pytest.raises(DataError, match="unknown benchmark"):
        build_router_qa("squad", tmp_path / "manual", tmp_path / "tfds")
    with pytest.raises(DataError, match="'musique' is not prepared"):
        router_qa_split("musique", "dev", tmp_path / "tfds")
    _write_jsonl(tmp_path / "manual" / "nq" / "test.jsonl", [{"id": 1, "question": "q", "golden_answers": []}])
    with pytest.raises(DataError, match=r"nq/test.jsonl:line 1: .*is empty"):
        build_router_qa("nq", tmp_path / "manual", tmp_path / "tfds")


class _NQOpenFixture(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Same name and features as the registered `natural_questions_open`, prepared from in-test rows."""

    name = "natural_questions_open"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=tfds.features.FeaturesDict(
            {"question": tfds.features.Text(), "answer": tfds.features.Sequence(tfds.features.Text())}))

    def _split_generators(self, dl_manager):
        return {"validation": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {"question": "who sang it", "answer": ["Ann", "Ann B."]}
        yield 1, {"question": "where is x?", "answer": []}


class _TriviaQAFixture(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A slice of the registered `trivia_qa` feature layout (nested answer struct, a config directory)."""

    name = "trivia_qa"
    VERSION = tfds.core.Version("1.1.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="unfiltered.nocontext")]

    def _info(self):
        answer = tfds.features.FeaturesDict({"value": tfds.features.Text(),
                                             "aliases": tfds.features.Sequence(tfds.features.Text())})
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=tfds.features.FeaturesDict(
            {"question": tfds.features.Text(), "question_id": tfds.features.Text(),
             "question_source": tfds.features.Text(), "answer": answer}))

    def _split_generators(self, dl_manager):
        return {"validation": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {"question": "Which planet is red", "question_id": "tc_1", "question_source": "web",
                  "answer": {"value": "Mars", "aliases": ["Mars", "Red Planet"]}}


def test_registered_adapters_read_prepared_local_data(tmp_path):
    _NQOpenFixture(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    _TriviaQAFixture(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    nq = registered_qa_split("natural_questions_open", "validation", data_dir=tmp_path)
    assert nq[0] == QARecord("natural_questions_open_validation_0", "who sang it?", ["Ann", "Ann B."], "nq")
    with pytest.raises(DataError, match="row 1: no answers"):
        nq[1]
    (trivia,) = list(registered_qa_split("trivia_qa", "validation", data_dir=tmp_path))
    assert trivia == QARecord("tc_1", "Which planet is red?", ["Mars", "Red Planet"], "triviaqa",
                              {"question_source": "web"})
    with pytest.raises(DataError, match="no split 'train'; prepared splits: \\['validation'\\]"):
        registered_qa_split("trivia_qa", "train", data_dir=tmp_path)
    with pytest.raises(DataError, match="no prepared config 'rc'"):
        registered_qa_split("trivia_qa", "validation", data_dir=tmp_path, config="rc")
    assert "tensorflow" not in sys.modules


def test_registered_adapter_absent_data_fails_fast_without_download(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError, match=r"'natural_questions_open' is not prepared under .*tfds build "
                                        r"natural_questions_open --file_format=array_record"):
        registered_qa_split("natural_questions_open", "validation", data_dir=tmp_path)
    with pytest.raises(DataError, match="tfds build trivia_qa/unfiltered.nocontext"):
        registered_qa_split("trivia_qa", "validation", data_dir=tmp_path)
    with pytest.raises(DataError, match="no QARecord adapter"):
        registered_qa_split("squad", "validation", data_dir=tmp_path)
    assert time.monotonic() - start < 5
