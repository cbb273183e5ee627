"""Upstream's subsets: same indices as `random.seed(42); random.sample(...)` run the upstream way."""
import random

import pytest

from rr1_jax.data.qa import DataError, QARecord
from rr1_jax.data.sampling import upstream_eval_split, upstream_sample_indices, upstream_test_set, \
    upstream_train_set


def _source(name, n):
    return [QARecord(f"{name}_{i}", f"q{i}?", [f"a{i}"], name) for i in range(n)]


def test_train_set_matches_global_random_sequence():
    nq, hotpot = _source("nq", 10_000), _source("hotpotqa", 9_000)
    random.seed(42)  # what qa_train_merge.py does at import, then one sample per source in CLI order
    expected_nq = random.sample(range(10_000), 7000)
    expected_hotpot = random.sample(range(9_000), 7000)
    train = upstream_train_set({"nq": nq, "hotpotqa": hotpot})
    assert len(train) == 14_000
    assert [r.id for r in train[:7000]] == [f"nq_{i}" for i in expected_nq]
    assert [r.id for r in train[7000:]] == [f"hotpotqa_{i}" for i in expected_hotpot]
    assert train[7001].metadata["extra_info"] == {"split": "train", "index": 1, "source_row": expected_hotpot[1]}


def test_test_set_caps_at_500_and_keeps_all_bamboogle():
    random.seed(42)
    expected_nq = random.sample(range(10_000), 500)
    random.seed(42)  # qa_test_gen.py runs once per benchmark, each a fresh process
    expected_bamboogle = random.sample(range(125), 125)
    nq_test = upstream_test_set({"nq": _source("nq", 10_000)})
    bamboogle = upstream_test_set({"bamboogle": _source("bamboogle", 125)})
    assert [r.id for r in nq_test] == [f"nq_{i}" for i in expected_nq]
    assert [r.id for r in bamboogle] == [f"bamboogle_{i}" for i in expected_bamboogle]
    assert sorted(expected_bamboogle) == list(range(125))


def test_too_small_train_source_is_a_clear_error():
    with pytest.raises(DataError, match="'hotpotqa' has 100 rows but 7000 are sampled"):
        upstream_sample_indices([("nq", 10_000), ("hotpotqa", 100)], 7000, cap_at_size=False)


def test_eval_split_preference():
    assert upstream_eval_split(["train", "dev"]) == "dev"
    assert upstream_eval_split(["dev", "test", "train"]) == "test"
    with pytest.raises(DataError):
        upstream_eval_split(["validation"])
