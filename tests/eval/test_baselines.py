"""Baselines: single candidates and the oracle against `routing_reference`, the KNN router, embeddings, Pareto."""
import asyncio

import numpy as np
import pytest

from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
from rr1_jax.data.synthetic_candidates import default_candidates
from rr1_jax.data.synthetic_routing import routing_reference
from rr1_jax.eval.baselines import largest_candidate, oracle_result, query_candidates, single_candidate_results
from rr1_jax.eval.knn_router import KNNRouter, embed_questions
from rr1_jax.eval.plots import ParetoPoint, pareto_front, pareto_plot
from rr1_jax.rollout.pool import PoolClient, PoolConfig
from rr1_jax.rollout.simulated_pool import SimulatedPoolConfig, SimulatedPoolServer, simulated_candidate_pool


@pytest.fixture(scope="module")
def task():
    return make_synthetic_task(SyntheticConfig(seed=3, num_train=8, num_test=24, countries_per_split=6,
                                               companies_per_split=8, albums_per_split=6))


def test_single_candidates_and_oracle_equal_routing_reference(task):
    records = task.test

    async def go():
        async with SimulatedPoolServer(task.table, config=SimulatedPoolConfig(seed=0, latency_scale=0)) as url:
            async with PoolClient(simulated_candidate_pool(url), PoolConfig(require_keys=False)) as client:
                return client.pool, await query_candidates(client, records)

    pool, replies = asyncio.run(go())
    reference = routing_reference(records, default_candidates(), task.table, seed=0)
    singles = single_candidate_results(records, replies, pool)
    oracle = oracle_result(records, replies, pool)
    assert 0 < reference.oracle.em <= 1 and reference.oracle.em > reference.best_single.em  # a non-trivial task
    for row, ref in zip(singles + [oracle], reference.candidates + (reference.oracle,)):
        assert row.overall("em") == pytest.approx(ref.em), row.name
        assert row.overall("cost") == pytest.approx(ref.cost), row.name
        assert {g: v["em"]["mean"] for g, v in row.summary.items() if g != "overall"} == pytest.approx(
            ref.em_by_source), row.name
        assert {g: v["cost"]["mean"] for g, v in row.summary.items() if g != "overall"} == pytest.approx(
            ref.cost_by_source), row.name
    assert singles[4].name == "single: Mixtral-8x22B-Instruct (largest)"
    assert all(row.overall("calls") == 1.0 for row in singles)
    assert oracle.overall("calls") == pytest.approx(reference.oracle.em)  # one call when some candidate is right


def test_largest_candidate_is_the_most_expensive(task):
    pool = simulated_candidate_pool("http://127.0.0.1:1/v1")
    assert largest_candidate(pool) == "Mixtral-8x22B-Instruct"


def test_knn_router_routes_to_the_best_candidate_of_the_neighbours():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    train = np.concatenate([c + rng.normal(0, 0.5, (5, 3)) for c in centres])  # 3 clusters x 5 questions
    correct = np.zeros((15, 3), bool)
    cost = np.tile([1.0, 5.0, 2.0], (15, 1))
    correct[:5, 0] = True  # cluster A: only candidate 0 is right
    correct[5:10, 1] = True  # cluster B: only candidate 1 (the expensive one) is right
    correct[10:, 1] = correct[10:, 2] = True  # cluster C: 1 and 2 are right; 2 is cheaper
    correct[3, 0], correct[3, 2] = False, True  # one noisy neighbour in A does not flip the majority
    router = KNNRouter(k=5).fit(train, correct, cost)
    queries = centres * 0.9 + rng.normal(0, 0.3, (3, 3))
    assert router.route(queries).tolist() == [0, 1, 2]
    assert sorted(router.neighbours(queries[:1])[0].tolist()) == [0, 1, 2, 3, 4]
    assert KNNRouter(k=50).fit(train, correct, cost).route(queries[:1]).tolist() == [1]  # all 15: 1 is right 10x
    with pytest.raises(ValueError, match="do not agree"):
        KNNRouter().fit(train, correct[:3], cost)
    with pytest.raises(RuntimeError, match="before fit"):
        KNNRouter().route(queries)


def test_question_embeddings_are_mean_pooled_hidden_states():
    import jax.numpy as jnp
    from flax import nnx

    from rr1_jax.eval.evaluate import random_params
    from rr1_jax.model.config import ModelConfig
    from tests.byte_tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    config = ModelConfig.tiny(vocab_size=len(tokenizer))
    graphdef, params = random_params(config, seed=1, std=0.2)
    questions = ["Who founded Zorva Labs?", "What is the capital of the country where Trevix Motors was founded?"]
    embedded = embed_questions(graphdef, params, tokenizer, questions, batch_size=4)
    assert embedded.shape == (2, config.hidden_size)
    ids = tokenizer.encode(questions[0], add_special_tokens=False)
    hidden, _ = nnx.merge(graphdef, params).hidden_states(jnp.asarray([ids]), jnp.arange(len(ids))[None])
    np.testing.assert_allclose(embedded[0], np.asarray(hidden[0]).mean(axis=0), atol=1e-5)  # padding-independent
    assert not np.allclose(embedded[0], embedded[1])


def test_pareto_front_and_plot(tmp_path):
    points = [ParetoPoint("free", 0.0, 0.1), ParetoPoint("cheap", 1.0, 0.5, "policy"),
              ParetoPoint("dominated", 2.0, 0.4), ParetoPoint("best", 10.0, 0.9),
              ParetoPoint("same-em-costlier", 12.0, 0.9)]
    assert [p.label for p in pareto_front(points)] == ["free", "cheap", "best"]
    path = pareto_plot(points, str(tmp_path / "plots" / "pareto.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one point"):
        pareto_plot([], str(tmp_path / "x.png"))
