"""Per-question scores and their aggregation: EM, F1, format, routed calls, cost — per `data_source` and overall.

Semantics follow upstream's validation (spec/router-r1.md §7, §9.2): EM and F1 are computed on the LAST `<answer>`
of the response regardless of format validity; `format` is the share of responses passing the strict format gate;
`route_cnt` is upstream's validation route count. Additionally, what upstream does not log: `calls` (routed calls
actually executed per question), `calls/<candidate>` (per candidate), the raw cost (Σ completion tokens × $/1M,
upstream's unit) and true dollars.

Baselines that are not policy outputs (a single candidate, the oracle, the KNN router) have no format and no
route tags: their `format`, `route_cnt` and `reward` are None and reported as "—".
"""
from __future__ import annotations

import collections
import dataclasses
import re
from typing import Mapping, Optional, Sequence

import numpy as np

from rr1_jax.data.qa import QARecord
from rr1_jax.rl.rewards import (FORMAT_OK, exact_match, extract_answer, f1_score, format_reward, route_count,
                                route_reward)
from rr1_jax.rollout.candidates import CandidatePool
from rr1_jax.rollout.episode import EpisodeInfo

OVERALL = "overall"
UNKNOWN_CANDIDATE = "<unknown name>"  # calls whose model name resolved to no candidate
CALLS_PREFIX = "calls/"
# Metrics averaged over questions; `n` (question count) is added per group.
METRICS = ("em", "f1", "format", "reward", "calls", "route_cnt", "cost", "dollars")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")
_ANSWER_LABEL = re.compile(r"^answer\s*:\s*", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class EpisodeScore:
    """The scores of one question under one method (one seed)."""

    id: str
    data_source: str
    em: float
    f1: float
    format: Optional[float]  # 1.0 / 0.0: passes the format gate; None when the method has no format
    reward: Optional[float]  # upstream's reward (format ▸ EM ▸ cost); None without format
    calls: int  # routed calls executed (including unknown names, excluding unanswered final routes)
    route_cnt: Optional[int]  # upstream's validation route count; None without route tags
    calls_by_candidate: Mapping[str, int]
    cost: float  # Σ completion_tokens × $/1M of the routed calls (upstream unit)
    dollars: float
    answer: Optional[str]
    response: str = ""  # the policy's response (turns and observations) or the candidate's reply


def score_policy_episode(record: QARecord, episode: EpisodeInfo, pool: CandidatePool, cost_reward: float = 0.5,
                         alpha: float = 0.0, metric: str = "em", form: str = "hierarchical") -> EpisodeScore:
    """Scores a rollout episode: the response text decides EM/F1/format/route_cnt, its route log the calls;
    `reward` is the training reward (`route_reward` with this alpha, metric and form)."""
    response = episode.response_text
    answer = extract_answer(response)
    by_candidate = collections.Counter(r.candidate or UNKNOWN_CANDIDATE for r in episode.routes)
    return EpisodeScore(
        id=record.id, data_source=record.data_source, em=exact_match(answer, record.golden_answers),
        f1=f1_score(answer, record.golden_answers),
        format=float(format_reward(response, pool) == FORMAT_OK),
        reward=route_reward(response, record.golden_answers, cost_reward, alpha, pool, metric=metric, form=form),
        calls=episode.num_routes, route_cnt=route_count(response, pool), calls_by_candidate=dict(by_candidate),
        cost=episode.cost, dollars=episode.dollars, answer=answer, response=response)


def reply_answer(reply: Optional[str]) -> Optional[str]:
    """The answer inside a candidate's reply when the reply itself is the answer: its first sentence.

    The helper prompt asks candidates to answer and then explain briefly, so the first sentence (up to the
    first sentence-ending mark followed by whitespace, or a newline) is the answer, less a leading "Answer:"
    label; the synthetic task's simulated replies are exactly `"Answer: <answer>. <explanation>"`. None for a
    failed call.
    """
    if reply is None:
        return None
    reply = _ANSWER_LABEL.sub("", reply.strip(), count=1)
    return _SENTENCE_END.split(reply, maxsplit=1)[0].strip() if reply else reply


def score_candidate_reply(record: QARecord, candidate: Optional[str], reply: Optional[str], cost: float,
                          dollars: float) -> EpisodeScore:
    """Scores a one-call router that takes the reply of `candidate` as its answer (None: no call was made)."""
    answer = reply_answer(reply)
    calls = {} if candidate is None else {candidate: 1}
    return EpisodeScore(id=record.id, data_source=record.data_source, em=exact_match(answer, record.golden_answers),
                        f1=f1_score(answer, record.golden_answers), format=None, reward=None,
                        calls=len(calls), route_cnt=None, calls_by_candidate=calls, cost=cost, dollars=dollars,
                        answer=answer, response=reply or "")


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def aggregate(scores: Sequence[EpisodeScore]) -> dict[str, dict[str, Optional[float]]]:
    """{group: {metric: mean over its questions}} for each `data_source` and `overall` (all questions).

    Metrics: `n`, the `METRICS`, and `calls/<candidate>` (calls to that candidate per question) for every
    candidate called anywhere in `scores` (0 in groups where it was not called).
    """
    if not scores:
        raise ValueError("aggregate needs at least one scored question")
    candidates = sorted({c for s in scores for c in s.calls_by_candidate})
    groups: dict[str, list[EpisodeScore]] = {OVERALL: list(scores)}
    for s in scores:
        groups.setdefault(s.data_source, []).append(s)
    out = {}
    for group in [OVERALL] + sorted(g for g in groups if g != OVERALL):
        members = groups[group]
        row: dict[str, Optional[float]] = {"n": float(len(members))}
        for metric in METRICS:
            row[metric] = _mean([getattr(s, metric) for s in members])
        for c in candidates:
            row[CALLS_PREFIX + c] = _mean([s.calls_by_candidate.get(c, 0) for s in members])
        out[group] = row
    return out


def summarize_seeds(per_seed: Sequence[Mapping[str, Mapping[str, Optional[float]]]]
                    ) -> dict[str, dict[str, Optional[dict[str, float]]]]:
    """Mean ± std across seeds of every aggregated metric: {group: {metric: {"mean", "std"} or None}}.

    `std` is the population standard deviation over seeds (0 for a single seed). A metric that is None in
    every seed stays None; a `calls/<candidate>` missing in a seed counts as 0 there.
    """
    if not per_seed:
        raise ValueError("summarize_seeds needs at least one seed")
    groups = list(dict.fromkeys(g for run in per_seed for g in run))
    out = {}
    for group in groups:
        metrics = list(dict.fromkeys(m for run in per_seed for m in run.get(group, {})))
        row = {}
        for metric in metrics:
            values = [run.get(group, {}).get(metric) for run in per_seed]
            if metric.startswith(CALLS_PREFIX):
                values = [0.0 if v is None else v for v in values]
            present = [v for v in values if v is not None]
            row[metric] = ({"mean": float(np.mean(present)), "std": float(np.std(present))} if present else None)
        out[group] = row
    return out
