"""Reference routers for the synthetic task: every single candidate, the per-question oracle, two-hop plans.

Each single-candidate reference and the oracle send the question itself to one candidate (one call). The oracle
calls, per question, the cheapest candidate whose (deterministic) reply is correct, and calls nobody (cost 0,
wrong) when none is. The gap between the oracle and the best single candidate is what a learned router can gain.
A two-hop plan answers a multi-hop question in two calls, as the decomposed demonstrations do.
"""
from __future__ import annotations

import dataclasses
import re
import string
from typing import Sequence

from rr1_jax.data.qa import QARecord
from rr1_jax.data.synthetic import KnowledgeTable
from rr1_jax.data.synthetic_candidates import CandidateProfile, SimulatedReply, reply_for_fact, simulated_reply


def normalize_answer(text: str) -> str:
    """Upstream's EM normalisation: lower-case, drop punctuation and articles, squeeze whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def reply_is_correct(reply: SimulatedReply, golden_answers: Sequence[str]) -> bool:
    return reply.answer is not None and normalize_answer(reply.answer) in {normalize_answer(g) for g in golden_answers}


@dataclasses.dataclass(frozen=True)
class RouterScore:
    """Mean exact match and mean cost per question (upstream cost units: tokens x $/1M), overall and by domain."""

    name: str
    em: float
    cost: float
    em_by_source: dict[str, float]
    cost_by_source: dict[str, float]


@dataclasses.dataclass(frozen=True)
class RoutingReference:
    candidates: tuple[RouterScore, ...]
    oracle: RouterScore

    @property
    def best_single(self) -> RouterScore:
        """Highest EM; ties go to the cheaper candidate."""
        return max(self.candidates, key=lambda s: (s.em, -s.cost))


def _score(name: str, records: Sequence[QARecord], correct: list[bool], costs: list[float]) -> RouterScore:
    by_source: dict[str, list[tuple[bool, float]]] = {}
    for record, ok, cost in zip(records, correct, costs):
        by_source.setdefault(record.data_source, []).append((ok, cost))
    return RouterScore(name=name, em=sum(correct) / len(records), cost=sum(costs) / len(records),
                       em_by_source={k: sum(ok for ok, _ in v) / len(v) for k, v in sorted(by_source.items())},
                       cost_by_source={k: sum(c for _, c in v) / len(v) for k, v in sorted(by_source.items())})


def routing_reference(records: Sequence[QARecord], profiles: Sequence[CandidateProfile], table: KnowledgeTable,
                      seed: int = 0) -> RoutingReference:
    """Scores every single candidate and the oracle on ``records`` (the question text is the routed query)."""
    if not records or not profiles:
        raise ValueError("routing_reference needs at least one record and one candidate")
    replies = [[simulated_reply(p, r.question, table, seed) for p in profiles] for r in records]
    correct = [[reply_is_correct(reply, r.golden_answers) for reply in row] for r, row in zip(records, replies)]
    singles = tuple(_score(p.name, records, [row[j] for row in correct], [row[j].cost for row in replies])
                    for j, p in enumerate(profiles))
    oracle_correct, oracle_cost = [], []
    for row, ok in zip(replies, correct):
        costs = [reply.cost for reply, good in zip(row, ok) if good]
        oracle_correct.append(bool(costs))
        oracle_cost.append(min(costs) if costs else 0.0)
    return RoutingReference(candidates=singles, oracle=_score("oracle", records, oracle_correct, oracle_cost))


def oracle_choice(query_text: str, golden_answers: Sequence[str], profiles: Sequence[CandidateProfile],
                  table: KnowledgeTable, seed: int = 0) -> CandidateProfile | None:
    """The cheapest candidate whose reply to ``query_text`` matches ``golden_answers``; None if none does."""
    best, best_cost = None, float("inf")
    for profile in profiles:
        reply = simulated_reply(profile, query_text, table, seed)
        if reply_is_correct(reply, golden_answers) and reply.cost < best_cost:
            best, best_cost = profile, reply.cost
    return best


def two_hop_score(records: Sequence[QARecord], first: CandidateProfile, second: CandidateProfile,
                  table: KnowledgeTable, seed: int = 0) -> RouterScore:
    """The decomposed plan for multi-hop ``records``: ask ``first`` where the company was founded, then ``second``
    for the capital of the country it named (no second call when it named none), and answer with that reply.

    Cheap specialists chained this way can rival one expensive multi-hop expert at a fraction of its cost.
    """
    correct, costs = [], []
    for record in records:
        fact = table.lookup(record.question)
        if fact is None or fact.kind != "multihop":
            raise ValueError(f"record {record.id!r} is not a multi-hop question of this table: {record.question!r}")
        reply = reply_for_fact(first, table.fact("founding_country", fact.entity), table, seed)
        cost = reply.cost
        if reply.answer in table.capital_of:
            reply = reply_for_fact(second, table.fact("capital", reply.answer), table, seed)
            cost += reply.cost
        correct.append(reply_is_correct(reply, record.golden_answers))
        costs.append(cost)
    return _score(f"{first.name} -> {second.name}", records, correct, costs)
