"""Entity renaming for SFT demonstrations: teaches a policy trained from scratch to copy names, not recall them.

A tiny policy trained on a few hundred training entities learns to write the entity it remembers best instead
of the one the question names: memorising is cheaper than copying when the names repeat. Renaming each
demonstration's invented words (entity, intermediate country, answers, wrong answers) consistently to other
invented words of the world makes recall useless, so the loss only falls by copying from the question and from
the candidates' replies, the skill held-out questions need. Substitutes are drawn from every invented word of
the world (as a pretrained model has seen every word of its vocabulary); the renamed text keeps the training
demonstration's facts, so no held-out fact is ever shown.
"""
from __future__ import annotations

import dataclasses
import random
import re
from typing import Sequence

from rr1_jax.data.demonstrations import Demonstration
from rr1_jax.data.synthetic import RELEASE_YEARS, KnowledgeTable


def invented_words(table: KnowledgeTable) -> list[str]:
    """Every invented word of the world, sorted: countries, capitals, and the invented first words of company and
    album names (their suffixes, e.g. "Labs", are ordinary words and stay). Founders' names are renamed whole
    (`invented_names`)."""
    words = set(table.capital_of) | set(table.capital_of.values())
    words |= {name.split()[0] for name in (*table.founder_of, *table.year_of)}
    return sorted(words)


def invented_names(table: KnowledgeTable) -> list[str]:
    """Every founder's full name, sorted: renamed only to another founder's name, so a name that is one token
    of the task's word tokenizer (`answer_phrases`) stays one token after renaming."""
    return sorted(set(table.founder_of.values()))


_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


def rename_demonstration(demo: Demonstration, words: Sequence[str], rng: random.Random,
                         names: Sequence[str] = ()) -> Demonstration:
    """`demo` with each invented word (of `words`) mapped to a distinct random word of `words`, each multi-word
    name (of `names`) to a distinct random name of `names`, and each year to a distinct random year, everywhere:
    question, golden answers, policy text and observations. Routes, correctness and cost are unchanged. Years
    are renamed too: a policy that can recall a training album's year need not learn to copy it."""
    name_set = set(names)
    known = set(words) | name_set
    whole = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    pattern = re.compile((rf"\b(?:{whole})\b|" if names else "") + r"\b[A-Z][a-z]+\b")
    texts = [demo.record.question, *demo.record.golden_answers, demo.final_answer,
             *(segment.text for segment in demo.segments)]
    present = {w for text in texts for w in pattern.findall(text) if w in known}
    present_names = sorted(present & name_set)
    present_words = sorted(present - name_set)
    mapping = {**dict(zip(present_words, rng.sample(list(words), len(present_words)))),
               **dict(zip(present_names, rng.sample(list(names), len(present_names))))}
    present_years = sorted({y for text in texts for y in _YEAR.findall(text)})
    year_mapping = dict(zip(present_years, map(str, rng.sample(RELEASE_YEARS, len(present_years)))))

    def rename(text: str) -> str:
        text = pattern.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
        return _YEAR.sub(lambda m: year_mapping[m.group(0)], text)

    record = demo.record.replace(question=rename(demo.record.question),
                                 golden_answers=[rename(a) for a in demo.record.golden_answers])
    segments = tuple(dataclasses.replace(s, text=rename(s.text)) for s in demo.segments)
    return dataclasses.replace(demo, record=record, segments=segments, final_answer=rename(demo.final_answer))


def rename_some(demos: Sequence[Demonstration], table: KnowledgeTable, fraction: float,
                seed: int = 0) -> list[Demonstration]:
    """Each demonstration renamed with probability `fraction` (deterministic per seed)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rename fraction must lie in [0, 1], got {fraction}")
    rng = random.Random(f"rr1_jax.renaming/{seed}")
    words, names = invented_words(table), invented_names(table)
    return [rename_demonstration(d, words, rng, names) if rng.random() < fraction else d for d in demos]
