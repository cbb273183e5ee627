"""Resumable iteration, per-host sharding and padded batches with a validity mask."""
import numpy as np
import pytest

from rr1_jax.data.batching import QABatchIterator
from rr1_jax.data.qa import QARecord

RECORDS = [QARecord(str(i), f"q{i}?", ["a"], "nq") for i in range(23)]


def _ids(batch):
    return [r.id if ok else None for r, ok in zip(batch.records, batch.valid)]


def test_resume_mid_epoch_gives_the_same_sequence():
    reference = QABatchIterator(RECORDS, 4, seed=3, process_index=0, process_count=1)
    expected = [_ids(next(reference)) for _ in range(15)]  # crosses two epoch boundaries
    first = QABatchIterator(RECORDS, 4, seed=3, process_index=0, process_count=1)
    got = [_ids(next(first)) for _ in range(4)]
    state = first.state_dict()
    restored = QABatchIterator(RECORDS, 4, seed=3, process_index=0, process_count=1)
    restored.load_state_dict(state)
    got += [_ids(next(restored)) for _ in range(11)]
    assert got == expected
    epoch0 = [i for batch in expected[:6] for i in batch if i is not None]
    epoch1 = [i for batch in expected[6:12] for i in batch if i is not None]
    assert sorted(epoch0, key=int) == [r.id for r in RECORDS] and epoch0 != epoch1  # reshuffled per epoch


def test_resume_rejects_other_data_or_seed():
    state = QABatchIterator(RECORDS, 4, seed=3, process_index=0, process_count=1).state_dict()
    with pytest.raises(ValueError, match="seed=3"):
        QABatchIterator(RECORDS, 4, seed=4, process_index=0, process_count=1).load_state_dict(state)
    with pytest.raises(ValueError, match="num_records"):
        QABatchIterator(RECORDS[:5], 4, seed=3, process_index=0, process_count=1).load_state_dict(state)


def test_two_hosts_cover_the_data_disjointly_in_lockstep():
    hosts = [QABatchIterator(RECORDS, 4, seed=1, num_epochs=1, process_index=p, process_count=2) for p in (0, 1)]
    batches = [list(h) for h in hosts]
    assert len(batches[0]) == len(batches[1]) == 3  # 23 rows -> 12 per host -> 3 batches each
    seen = [[i for b in host for i in _ids(b) if i is not None] for host in batches]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1], key=int) == [r.id for r in RECORDS]
    assert [len(b) for b in batches[0]] == [len(b) for b in batches[1]]


def test_last_batch_padded_to_multiple_with_mask():
    it = QABatchIterator(RECORDS, 8, shuffle=False, num_epochs=1, process_index=0, process_count=1, pad_multiple=4)
    batches = list(it)
    assert [len(b) for b in batches] == [8, 8, 8]  # 7 leftover rows padded up to 8
    assert batches[-1].valid.tolist() == [True] * 7 + [False]
    assert batches[-1].records[-1] == batches[-1].records[0]  # padding repeats a real row
    it = QABatchIterator(RECORDS, 8, shuffle=False, num_epochs=1, process_index=0, process_count=1,
                         pad_multiple=2, drop_remainder=False)
    tail = list(it)[-1]
    assert len(tail) == 8 and int(np.sum(tail.valid)) == 7
    it = QABatchIterator(RECORDS[:17], 8, shuffle=False, num_epochs=1, process_index=0, process_count=1,
                         pad_multiple=2)
    assert [len(b) for b in it] == [8, 8, 2]  # one leftover row padded to the mesh multiple, not the batch
    dropped = QABatchIterator(RECORDS, 8, num_epochs=2, process_index=0, process_count=1, drop_remainder=True)
    assert [int(b.valid.sum()) for b in dropped] == [8, 8] * 2


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="multiple of pad_multiple"):
        QABatchIterator(RECORDS, 6, pad_multiple=4, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="process_index"):
        QABatchIterator(RECORDS, 4, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="at least one record"):
        QABatchIterator([], 4, process_index=0, process_count=1)


def test_defaults_to_jax_process():
    it = QABatchIterator(RECORDS, 4)
    assert (it.process_index, it.process_count) == (0, 1)
