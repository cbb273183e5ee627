"""The KNN router baseline (single round): route a question to the candidate that did best on its neighbours.

Embeddings are the policy's own mean-pooled final hidden states of the question tokens (`embed_questions`), so
the baseline needs no extra model. Fitting queries every candidate on training questions (through the pool
client) and records, per training question, which candidates answered correctly and at what cost. A test
question goes to the candidate with the highest accuracy over its `k` nearest training questions (cosine
similarity), ties broken by the lower mean cost there, then by pool order — "best: correct, then cheapest".
The chosen candidate's reply is the answer, as for the other candidate baselines.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rr1_jax.data.qa import QARecord, upstream_question
from rr1_jax.eval.baselines import correctness, costs, query_candidates
from rr1_jax.eval.report import CANDIDATES_DECODE, MethodResult
from rr1_jax.eval.scoring import score_candidate_reply
from rr1_jax.rollout.pool import PoolClient


class KNNRouter:
    """k-nearest-neighbour routing over unit-normalised embeddings."""

    def __init__(self, k: int = 5):
        if k < 1:
            raise ValueError(f"KNN router needs k >= 1, got {k}")
        self.k = k
        self._keys = None

    def fit(self, embeddings: np.ndarray, correct: np.ndarray, cost: np.ndarray) -> "KNNRouter":
        """embeddings [N, D]; correct [N, C] bool; cost [N, C] (upstream unit) of each candidate's reply."""
        embeddings, correct, cost = np.asarray(embeddings, np.float64), np.asarray(correct, bool), np.asarray(cost)
        if embeddings.ndim != 2 or correct.shape != cost.shape or correct.shape[0] != embeddings.shape[0]:
            raise ValueError(f"KNNRouter.fit: shapes embeddings {embeddings.shape}, correct {correct.shape}, "
                             f"cost {cost.shape} do not agree ([N, D], [N, C], [N, C])")
        if embeddings.shape[0] == 0:
            raise ValueError("KNNRouter.fit needs at least one training question")
        self._keys, self._correct, self._cost = _unit(embeddings), correct, cost.astype(np.float64)
        return self

    def neighbours(self, embeddings: np.ndarray) -> np.ndarray:
        """[M, k'] indices of the nearest training questions (most similar first; k' = min(k, N))."""
        if self._keys is None:
            raise RuntimeError("KNNRouter.route called before fit")
        similarity = _unit(np.asarray(embeddings, np.float64)) @ self._keys.T  # [M, N]
        k = min(self.k, self._keys.shape[0])
        return np.argsort(-similarity, axis=1, kind="stable")[:, :k]

    def route(self, embeddings: np.ndarray) -> np.ndarray:
        """[M] candidate index for each query embedding."""
        chosen = []
        for near in self.neighbours(embeddings):
            accuracy = self._correct[near].mean(axis=0)  # [C]
            mean_cost = self._cost[near].mean(axis=0)
            order = np.lexsort((np.arange(len(accuracy)), mean_cost, -accuracy))  # last key is the primary one
            chosen.append(int(order[0]))
        return np.array(chosen, dtype=np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnums=0)
def _mean_pooled(graphdef, params, tokens, mask):
    positions = jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)
    hidden, _ = nnx.merge(graphdef, params).hidden_states(tokens, positions, mask)  # [B, T, E]
    weights = mask.astype(jnp.float32)[..., None]
    return (hidden.astype(jnp.float32) * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


def embed_questions(graphdef, params, tokenizer, questions: Sequence[str], batch_size: int = 8) -> np.ndarray:
    """[N, E] mean-pooled final hidden states of each question's tokens (right-padded fixed-shape batches)."""
    ids = [tokenizer.encode(upstream_question(q), add_special_tokens=False) for q in questions]
    width = max(16, 1 << (max(len(i) for i in ids) - 1).bit_length())
    pad = tokenizer.pad_token_id or 0
    out = []
    for start in range(0, len(ids), batch_size):
        rows = ids[start:start + batch_size]
        tokens = np.full((batch_size, width), pad, np.int32)
        mask = np.zeros((batch_size, width), np.int32)
        for b, row in enumerate(rows):
            tokens[b, :len(row)], mask[b, :len(row)] = row, 1
        out.append(np.asarray(_mean_pooled(graphdef, params, jnp.asarray(tokens), jnp.asarray(mask)))[:len(rows)])
    return np.concatenate(out, axis=0)


async def knn_result(policy, client: PoolClient, train: Sequence[QARecord], test: Sequence[QARecord],
                     k: int = 5) -> MethodResult:
    """Fits the router on `train` (querying every candidate) and routes each `test` question once."""
    if not train:
        raise ValueError("the KNN baseline needs training questions (a train split or --train_dataset)")
    train_replies = await query_candidates(client, train)
    train_emb = embed_questions(policy.graphdef, policy.params, policy.tokenizer, [r.question for r in train])
    router = KNNRouter(k).fit(train_emb, correctness(train, train_replies), costs(train_replies))
    test_emb = embed_questions(policy.graphdef, policy.params, policy.tokenizer, [r.question for r in test])
    names = client.pool.names
    picks = [names[j] for j in router.route(test_emb)]
    replies = await asyncio.gather(*(client.call(client.pool.resolve(n, "exact"), upstream_question(r.question))
                                     for r, n in zip(test, picks)))
    scores = [score_candidate_reply(rec, name, rep.content, rep.cost, rep.dollars)
              for rec, name, rep in zip(test, picks, replies)]
    return MethodResult.from_scores(f"KNN router (k={k})", "baseline", CANDIDATES_DECODE, [0], [scores],
                                    note=f"fit on {len(train)} training questions; embeddings: the policy's "
                                         f"mean-pooled hidden states")
