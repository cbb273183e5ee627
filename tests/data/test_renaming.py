"""Entity renaming of SFT demonstrations: consistent, complete, deterministic, and facts-preserving."""
import random
import re

import pytest

from rr1_jax.data.demonstrations import make_demonstrations
from rr1_jax.data.renaming import invented_names, invented_words, rename_demonstration, rename_some
from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
from rr1_jax.data.synthetic_candidates import default_candidates

TASK = make_synthetic_task(SyntheticConfig(num_train=40, num_test=4))
DEMOS = make_demonstrations(TASK.train, TASK.table, default_candidates(), strategy="uniform", style="terse")
WORDS = invented_words(TASK.table)
NAMES = invented_names(TASK.table)  # founders' full names


_NAME_OR_WORD = re.compile("|".join(map(re.escape, NAMES)) + r"|\b[A-Z][a-z]+\b")


def _names(text):
    return [w for w in _NAME_OR_WORD.findall(text) if w in {*WORDS, *NAMES}]


def test_invented_words_cover_every_name_of_the_world_and_no_cue_words():
    assert set(TASK.table.capital_of) <= set(WORDS) and set(TASK.table.capital_of.values()) <= set(WORDS)
    assert {c.split()[0] for c in TASK.table.founder_of} <= set(WORDS)
    assert set(TASK.table.founder_of.values()) == set(NAMES) and all(" " in name for name in NAMES)
    assert "Labs" not in WORDS and "Echoes" not in WORDS and "What" not in WORDS


def test_renaming_is_consistent_across_question_queries_replies_and_answer():
    for demo in DEMOS:
        renamed = rename_demonstration(demo, WORDS, random.Random(0), NAMES)
        entity = demo.record.metadata["entity"].split()[0]
        new_entity = _names(renamed.record.question)[0]
        assert entity not in renamed.text and new_entity != entity
        for segment, original in zip(renamed.segments, demo.segments):
            assert segment.is_policy == original.is_policy
            if entity in original.text:
                assert new_entity in segment.text  # the query and the reply name the renamed entity
        assert renamed.final_answer in renamed.text
        if demo.correct:  # the golden answer is renamed with the answer, so the demo stays correct
            assert renamed.final_answer in renamed.record.golden_answers
        assert (renamed.routes, renamed.cost, renamed.correct) == (demo.routes, demo.cost, demo.correct)
        assert renamed.record.id == demo.record.id
        # Everything but the invented words and the years is untouched.
        assert _mask(renamed.text) == _mask(demo.text)


def _mask(text):
    return re.sub(r"\b(?:19|20)\d\d\b", "Y", re.sub(r"\b[A-Z][a-z]+\b", "N", text))


def test_years_are_renamed_consistently_and_stay_distinct():
    """A tiny policy recalls a training album's year instead of copying it unless the years change too."""
    demos = [d for d in DEMOS if d.record.metadata["domain"] == "album_year"]
    assert len(demos) >= 3
    for seed, demo in enumerate(demos):
        renamed = rename_demonstration(demo, WORDS, random.Random(seed), NAMES)
        before, after = (re.findall(r"\b(?:19|20)\d\d\b", d.text) for d in (demo, renamed))
        assert len(before) == len(after) and before != after
        substitute = dict(zip(before, after))
        assert [substitute[y] for y in before] == after  # one year, one substitute everywhere
        assert len(set(before)) == len(set(after))  # a wrong reply's year stays wrong
        assert all(1955 <= int(y) <= 2023 for y in after)
        if demo.correct:
            assert renamed.final_answer in renamed.record.golden_answers


def test_distinct_names_stay_distinct():
    demo = next(d for d in DEMOS if len(set(_names(d.text))) >= 3)
    renamed = rename_demonstration(demo, WORDS, random.Random(1), NAMES)
    assert len(set(_names(renamed.text))) == len(set(_names(demo.text)))


def test_founders_names_are_renamed_whole_to_other_founders_names():
    """A founder's name is one token of the demo's word tokenizer; renaming it word by word would make names
    the tokenizer has never seen (two tokens each) in half of the SFT demonstrations."""
    demos = [d for d in DEMOS if d.record.metadata["domain"] == "founder" and d.final_answer in NAMES]
    assert len(demos) >= 3
    for demo in demos:
        renamed = rename_demonstration(demo, WORDS, random.Random(2), NAMES)
        assert renamed.final_answer in NAMES and renamed.final_answer != demo.final_answer
        assert demo.final_answer not in renamed.text and renamed.final_answer in renamed.text
        assert all(word not in renamed.text for word in demo.final_answer.split())


def test_rename_some_fraction_and_determinism():
    assert rename_some(DEMOS, TASK.table, 0.0) == DEMOS
    everything = rename_some(DEMOS, TASK.table, 1.0, seed=3)
    assert all(a.text != b.text for a, b in zip(everything, DEMOS))
    half = rename_some(DEMOS, TASK.table, 0.5, seed=3)
    assert half == rename_some(DEMOS, TASK.table, 0.5, seed=3)
    assert 5 < sum(a.text != b.text for a, b in zip(half, DEMOS)) < 35
    with pytest.raises(ValueError, match="rename fraction"):
        rename_some(DEMOS, TASK.table, 1.5)
