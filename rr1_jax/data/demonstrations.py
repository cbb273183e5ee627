"""Router-R1-format demonstration trajectories on the synthetic task, for the SFT warm start.

A demonstration is the response part of an episode as segments: policy text (trained on) and observation text
(inserted by the environment, masked out of the loss), exactly as the rollout builds them (spec §5.3):
``<think>…</think>\\n<search> Name: query </search>`` · ``\\n\\n<information>reply</information>\\n\\n`` · … ·
``<think>…</think>\\n<answer> X </answer>``. Observations are the simulated candidates' real replies, so the
final answer is what the chosen candidate said (correct for oracle routes, possibly wrong for specialist routes).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

from rr1_jax.data.qa import QARecord
from rr1_jax.data.synthetic import QUESTION_TEMPLATES, Fact, KnowledgeTable
from rr1_jax.data.synthetic_candidates import CandidateProfile, simulated_reply
from rr1_jax.data.synthetic_routing import normalize_answer, oracle_choice

STRATEGIES = ("oracle", "specialist", "uniform")
STYLES = ("verbose", "terse")
_TOPIC = {"capital": "the capital of a country", "founder": "the founder of a company",
          "founding_country": "the country where a company was founded", "album_year": "the release year of an album",
          "multihop": "the capital of the country where a company was founded"}
# the terse think's domain word(s); each domain ends on a word of its own, right before the candidate's name
_TERSE_TOPIC = {"capital": "capital", "founder": "founder", "founding_country": "country", "album_year": "album",
                "multihop": "capital where founded"}


@dataclasses.dataclass(frozen=True)
class Segment:
    """A piece of the response: ``is_policy`` True for model-written text, False for an inserted observation."""

    text: str
    is_policy: bool


@dataclasses.dataclass(frozen=True)
class Demonstration:
    record: QARecord
    segments: tuple[Segment, ...]
    routes: tuple[str, ...]  # candidate names called, in order
    final_answer: str
    correct: bool            # final answer matches a golden answer (upstream EM)
    cost: float              # sum of completion_tokens x $/1M over the calls

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)


def _specialist(kind: str, profiles: Sequence[CandidateProfile]) -> CandidateProfile:
    return max(profiles, key=lambda p: (p.accuracy[kind], -p.price_per_1m))


def _choose(strategy: str, fact: Fact, query: str, profiles: Sequence[CandidateProfile], table: KnowledgeTable,
            seed: int, variant: int = 0) -> CandidateProfile:
    if strategy == "uniform":  # a routing-agnostic start: the format is learned, the choice is left to RL
        digest = hashlib.sha256(f"{seed}|{query}".encode()).digest()  # variants rotate through the pool from here
        return profiles[(int.from_bytes(digest[:8], "little") + variant) % len(profiles)]
    if strategy == "oracle":
        chosen = oracle_choice(query, [fact.answer], profiles, table, seed)
        if chosen is not None:
            return chosen
    return _specialist(fact.kind, profiles)


def _hop_query(fact: Fact) -> str:
    slot = {"capital": "country", "album_year": "album"}.get(fact.kind, "company")
    return QUESTION_TEMPLATES[fact.kind].format(**{slot: fact.entity})


def make_demonstration(record: QARecord, table: KnowledgeTable, profiles: Sequence[CandidateProfile], *,
                       seed: int = 0, strategy: str = "oracle", decompose_multihop: bool = True,
                       style: str = "verbose", variant: int = 0) -> Demonstration:
    """One trajectory for ``record``; multi-hop questions take two routed calls when ``decompose_multihop``.

    ``strategy="oracle"`` calls the cheapest candidate that answers each hop correctly (the domain specialist when
    none does); ``"specialist"`` always calls the most accurate candidate for the hop's domain; ``"uniform"``
    calls a candidate drawn uniformly (deterministic per seed and query), teaching the format but not the routing.
    ``style="terse"`` keeps only what a route needs: ``<think>`` names the hop's domain in a word or two and then
    the candidate (``<think>capital Qwen2.5-7B-Instruct</think>``, which the search repeats), the final turn is
    just the answer (a tiny policy then spends its capacity on routing and copying, not on prose). The name is
    chosen right after the domain word, where the policy's state differs by domain (after ``<search>`` it hardly
    did, and PPO moved one preference shared by every domain: docs/learning.md, stop 32).
    ``variant`` k (uniform only) calls the candidate k places after the drawn one in ``profiles``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    terse = style == "terse"
    fact = table.lookup(record.question)
    if fact is None:
        raise ValueError(f"record {record.id!r}: question mentions no entity of this knowledge table")
    if fact.kind == "multihop" and decompose_multihop:
        hop = table.fact("founding_country", fact.entity)
        think = (f"The question asks for {_TOPIC['multihop']}, {fact.entity}. I know nothing about {fact.entity}, "
                 f"so first I need the country where it was founded.")
    else:
        hop, think = fact, f"The question asks for {_TOPIC[fact.kind]}, {fact.entity}. I know nothing about it."
    segments, routes, cost = [], [], 0.0
    while True:
        query = record.question if hop is fact else _hop_query(hop)
        profile = _choose(strategy, hop, query, profiles, table, seed, variant)
        if terse:
            think = f"{_TERSE_TOPIC[hop.kind]} {profile.name}"
        else:
            think += f" {profile.name} is a good choice for questions about {_TOPIC[hop.kind]}."
        segments.append(Segment(f"<think>{think}</think>\n<search> {profile.name}: {query} </search>", True))
        reply = simulated_reply(profile, query, table, seed)
        segments.append(Segment(f"\n\n<information>{reply.text.strip()}</information>\n\n", False))
        routes.append(profile.name)
        cost += reply.cost
        answer = reply.answer if reply.answer is not None else "unknown"
        if hop.kind != "founding_country" or fact.kind != "multihop" or answer not in table.capital_of:
            break
        hop = table.fact("capital", answer)
        think = f"{profile.name} says {fact.entity} was founded in {answer}. Now I need the capital of {answer}."
    final_think = "" if terse else f"<think>{profile.name} answered {answer}, which answers the question.</think>\n"
    segments.append(Segment(f"{final_think}<answer> {answer} </answer>", True))
    correct = normalize_answer(answer) in {normalize_answer(g) for g in record.golden_answers}
    return Demonstration(record=record, segments=tuple(segments), routes=tuple(routes), final_answer=answer,
                         correct=correct, cost=cost)


def make_demonstrations(records: Sequence[QARecord], table: KnowledgeTable, profiles: Sequence[CandidateProfile],
                        *, seed: int = 0, strategy: str = "oracle", decompose_multihop: bool = True,
                        style: str = "verbose", direct_multihop: float = 0.0,
                        routes_per_question: int = 1) -> list[Demonstration]:
    """``routes_per_question`` demonstrations per record (in record order); with ``decompose_multihop``, a
    ``direct_multihop`` fraction of the multi-hop questions (chosen per seed and record id) is still asked in one
    call, so both plans are demonstrated.

    With ``strategy="uniform"`` and ``routes_per_question=len(profiles)``, each question is demonstrated once with
    every candidate: its routing target is uniform per question, not only on average over questions, so a policy
    cannot learn a spurious preference from which candidate one question happened to draw.
    """
    if not 0.0 <= direct_multihop <= 1.0:
        raise ValueError(f"direct_multihop must lie in [0, 1], got {direct_multihop}")
    if routes_per_question < 1 or (routes_per_question > 1 and strategy != "uniform"):
        raise ValueError(f"routes_per_question={routes_per_question}: use 1, or more with strategy='uniform' (the "
                         f"other strategies choose one candidate per question, got {strategy!r})")

    def decompose(record: QARecord) -> bool:
        digest = hashlib.sha256(f"{seed}|direct|{record.id}".encode()).digest()
        return decompose_multihop and int.from_bytes(digest[:8], "little") / 2.0**64 >= direct_multihop

    return [make_demonstration(r, table, profiles, seed=seed, strategy=strategy, decompose_multihop=decompose(r),
                               style=style, variant=k) for r in records for k in range(routes_per_question)]
