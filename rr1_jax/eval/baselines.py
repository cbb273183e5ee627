"""The paper's baselines, scored exactly like the policy (same `EpisodeScore`s, same report rows).

Policy baselines run through the rollout (rr1_jax/eval/evaluate.py) with another prompt:
* Direct — `DIRECT_TEMPLATE`: answer at once inside `<answer>` (one generation, no routing);
* CoT — `COT_TEMPLATE`: think step by step inside `<think>`, then `<answer>` (one generation, no routing);
* Prompt LLM — the untrained policy with the routing prompt (the normal rollout).
Direct's answers carry no `<think>`, so they fail Router-R1's format gate by construction; EM ignores format.

Candidate baselines send the question itself (upstream's preprocessing) to candidates through the pool client,
and take the first sentence of the reply as the answer (`scoring.reply_answer`):
* each single candidate (the most expensive one is marked "largest", the paper's "Largest LLM");
* the oracle router — per question the cheapest candidate whose answer is correct (cost 0 and wrong when none
  is). It queries every candidate, but reports only the chosen call's cost: it is the upper bound of a
  one-call router, matching `rr1_jax.data.synthetic_routing.routing_reference` on the synthetic task.
The KNN router lives in rr1_jax/eval/knn_router.py.
"""
from __future__ import annotations

import asyncio
from typing import Optional, Sequence

import numpy as np

from rr1_jax.data.qa import QARecord, upstream_question
from rr1_jax.eval.report import CANDIDATES_DECODE, MethodResult
from rr1_jax.eval.scoring import reply_answer, score_candidate_reply
from rr1_jax.rl.rewards import exact_match
from rr1_jax.rollout.candidates import CandidatePool
from rr1_jax.rollout.pool import PoolClient, RouteResult

DIRECT_TEMPLATE = ("Answer the given question directly, without any explanation. Write only the final answer "
                   "inside <answer> and </answer>, for example <answer> Beijing </answer>. Question: {question}\n")
COT_TEMPLATE = ("Answer the given question. First think step by step inside <think> and </think>, then write the "
                "final answer inside <answer> and </answer>, for example <answer> Beijing </answer>. "
                "Question: {question}\n")


def largest_candidate(pool: CandidatePool) -> str:
    """The most expensive candidate (highest output price; the first one on ties): the paper's "Largest LLM"."""
    return max(pool, key=lambda c: c.output_price_per_1m).name


async def query_candidates(client: PoolClient, records: Sequence[QARecord],
                           names: Optional[Sequence[str]] = None) -> list[list[RouteResult]]:
    """Every record's question sent to every named candidate (default: the whole pool), concurrently: [Q][C]."""
    pool = client.pool
    candidates = [pool.resolve(n, "exact") for n in (pool.names if names is None else names)]
    calls = [client.call(c, upstream_question(r.question)) for r in records for c in candidates]
    results = await asyncio.gather(*calls)
    return [list(results[i * len(candidates):(i + 1) * len(candidates)]) for i in range(len(records))]


def correctness(records: Sequence[QARecord], replies: Sequence[Sequence[RouteResult]]) -> np.ndarray:
    """[Q, C] bool: whether each candidate's reply answers each question (EM of its first sentence)."""
    return np.array([[bool(exact_match(reply_answer(r.content), rec.golden_answers)) for r in row]
                     for rec, row in zip(records, replies)], dtype=bool).reshape(len(records), -1)


def costs(replies: Sequence[Sequence[RouteResult]]) -> np.ndarray:
    """[Q, C] metered cost of each reply (upstream unit)."""
    return np.array([[r.cost for r in row] for row in replies], dtype=np.float64).reshape(len(replies), -1)


def single_candidate_results(records: Sequence[QARecord], replies: Sequence[Sequence[RouteResult]],
                             pool: CandidatePool) -> list[MethodResult]:
    """One row per candidate: its reply to every question is the answer."""
    largest = largest_candidate(pool)
    rows = []
    for j, name in enumerate(pool.names):
        scores = [score_candidate_reply(rec, name, row[j].content, row[j].cost, row[j].dollars)
                  for rec, row in zip(records, replies)]
        label = f"single: {name}" + (" (largest)" if name == largest else "")
        rows.append(MethodResult.from_scores(label, "baseline", CANDIDATES_DECODE, [0], [scores]))
    return rows


def oracle_result(records: Sequence[QARecord], replies: Sequence[Sequence[RouteResult]],
                  pool: CandidatePool) -> MethodResult:
    """The per-question oracle: the cheapest correct candidate, or no call when none is correct."""
    right, cost = correctness(records, replies), costs(replies)
    scores = []
    for i, (rec, row) in enumerate(zip(records, replies)):
        if right[i].any():
            j = int(np.argmin(np.where(right[i], cost[i], np.inf)))
            scores.append(score_candidate_reply(rec, pool.names[j], row[j].content, row[j].cost, row[j].dollars))
        else:
            scores.append(score_candidate_reply(rec, None, None, 0.0, 0.0))
    return MethodResult.from_scores("oracle router", "baseline", CANDIDATES_DECODE, [0], [scores],
                                    note="cheapest correct candidate per question (queries all, bills one)")
