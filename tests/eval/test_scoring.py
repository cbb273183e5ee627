"""Metrics on hand-made episodes (no model): EM/F1/format/route counts/calls/cost per data_source, seeds, report."""
import math

import pytest

from rr1_jax.data.qa import QARecord
from rr1_jax.eval.report import CANDIDATES_DECODE, GREEDY, SAMPLED, EvalReport, MethodResult
from rr1_jax.eval.scoring import (UNKNOWN_CANDIDATE, aggregate, reply_answer, score_candidate_reply,
                                  score_policy_episode)
from rr1_jax.rollout.candidates import ROUTER_R1_POOL
from rr1_jax.rollout.episode import EpisodeInfo, RouteRecord

QWEN, L70 = "Qwen2.5-7B-Instruct", "LLaMA-3.1-70B-Instruct"


def route(candidate, tokens, price, name=None):
    return RouteRecord(1, name or candidate, candidate, "q", "reply", None, tokens, 3, tokens * price,
                       tokens * price / 1e6, 0.0, False, 1, 4, False)


def episode(text, routes=()):
    info = EpisodeInfo(response_text=text, routes=list(routes))
    info.cost = sum(r.cost for r in routes)
    info.dollars = sum(r.dollars for r in routes)
    return info


def record(i, source, gold):
    return QARecord(id=f"q{i}", question=f"question {i}?", golden_answers=[gold], data_source=source)


CASES = [
    # nq: routes once to Qwen (5 tokens x 0.30), valid format, correct
    (record(1, "nq", "Paris"), episode(
        "<think>need help</think>\n<search> Qwen2.5-7B-Instruct: capital of France? </search>\n\n<information>Paris."
        "</information>\n\n<think>got it</think>\n<answer> Paris </answer>", [route(QWEN, 5, 0.30)])),
    # nq: no <think> -> format fails; wrong answer
    (record(2, "nq", "Paris"), episode("<answer> London </answer>")),
    # hotpotqa: second route names an unknown model -> format fails, route_cnt stops there; EM still counts
    (record(3, "hotpotqa", "Eiffel Tower"), episode(
        "<think>a</think>\n<search> LLaMA-3.1-70B-Instruct: who built it? </search>\n\n<information>x</information>"
        "\n\n<think>b</think>\n<search> GPT-9: who? </search>\n\n<information>None</information>\n\n<think>c</think>"
        "\n<answer> the Eiffel Tower </answer>", [route(L70, 10, 0.88), route(None, 0, 0.0, "GPT-9")])),
    # hotpotqa: valid, partially right (F1 2/3)
    (record(4, "hotpotqa", "Eiffel Tower"), episode("<think>x</think>\n<answer> Eiffel </answer>")),
]


def test_policy_episodes_aggregate_per_data_source():
    scores = [score_policy_episode(r, e, ROUTER_R1_POOL) for r, e in CASES]
    assert [s.em for s in scores] == [1.0, 0.0, 1.0, 0.0]
    assert [s.format for s in scores] == [1.0, 0.0, 0.0, 1.0]
    assert [s.route_cnt for s in scores] == [1, 0, 1, 0]
    assert [s.calls for s in scores] == [1, 0, 2, 0]
    assert scores[2].calls_by_candidate == {L70: 1, UNKNOWN_CANDIDATE: 1}
    assert [s.reward for s in scores] == [1.0, -1.0, -1.0, 0.0]  # alpha 0: format ▸ EM
    assert scores[3].f1 == pytest.approx(2 / 3)
    table = aggregate(scores)
    assert list(table) == ["overall", "hotpotqa", "nq"]
    nq, hp, overall = table["nq"], table["hotpotqa"], table["overall"]
    assert (nq["n"], nq["em"], nq["f1"], nq["format"], nq["calls"], nq["route_cnt"]) == (2, 0.5, 0.5, 0.5, 0.5, 0.5)
    assert nq["cost"] == pytest.approx(1.5 / 2) and nq["dollars"] == pytest.approx(1.5e-6 / 2)
    assert nq["calls/" + QWEN] == 0.5 and nq["calls/" + L70] == 0.0 and nq["reward"] == 0.0
    assert hp["f1"] == pytest.approx((1 + 2 / 3) / 2) and hp["calls"] == 1.0 and hp["cost"] == pytest.approx(4.4)
    assert hp["calls/" + UNKNOWN_CANDIDATE] == 0.5 and hp["calls/" + QWEN] == 0.0 and hp["reward"] == -0.5
    assert overall["n"] == 4 and overall["em"] == 0.5 and overall["calls"] == 0.75
    assert overall["cost"] == pytest.approx((1.5 + 8.8) / 4)


def test_candidate_replies_take_the_first_sentence_and_have_no_format():
    assert reply_answer("Paris. The capital of France is Paris.") == "Paris."
    assert reply_answer("1987\nIt was released then.") == "1987"
    assert reply_answer("Answer: Paris. The capital of France is Paris.") == "Paris."  # a leading label goes
    assert reply_answer("answer:1987") == "1987" and reply_answer("Answers vary.") == "Answers vary."
    assert reply_answer(None) is None and reply_answer("  ") == ""
    good = score_candidate_reply(record(1, "nq", "Paris"), QWEN, "Paris. It is the capital.", 3.0, 3e-6)
    failed = score_candidate_reply(record(2, "nq", "Paris"), None, None, 0.0, 0.0)
    assert (good.em, good.calls, good.calls_by_candidate, good.format, good.route_cnt) == (1.0, 1, {QWEN: 1},
                                                                                          None, None)
    assert (failed.em, failed.calls, failed.answer) == (0.0, 0, None)
    table = aggregate([good, failed])
    assert table["overall"]["format"] is None and table["overall"]["em"] == 0.5 and table["overall"]["cost"] == 1.5


def test_sampled_seeds_mean_and_std():
    per_seed_em = [[1, 1], [1, 0], [0, 0]]  # three seeds, two questions
    runs = []
    for seed, ems in enumerate(per_seed_em):
        runs.append([score_candidate_reply(record(i, "nq", "Paris"), QWEN if seed else None,
                                           "Paris." if em else "Rome.", 2.0 * seed, 0.0)
                     for i, em in enumerate(ems)])
    result = MethodResult.from_scores("m", "policy", SAMPLED, [0, 1, 2], runs)
    em = result.summary["overall"]["em"]
    assert em["mean"] == pytest.approx(0.5) and em["std"] == pytest.approx(math.sqrt(1 / 6))
    calls = result.summary["overall"]["calls/" + QWEN]  # seed 0 never calls Qwen: counts as 0 there
    assert calls["mean"] == pytest.approx(2 / 3) and calls["std"] == pytest.approx(math.sqrt(2 / 9))
    assert result.summary["nq"]["cost"]["mean"] == pytest.approx(2.0)
    assert result.summary["overall"]["format"] is None
    greedy = MethodResult.from_scores("g", "policy", GREEDY, [0], runs[:1])
    assert greedy.summary["overall"]["em"] == {"mean": 1.0, "std": 0.0}
    with pytest.raises(ValueError, match="2 seeds but 3"):
        MethodResult.from_scores("m", "policy", SAMPLED, [0, 1], runs)
    markdown = EvalReport([result, greedy], {"dataset": "toy"}).to_markdown()
    assert "| m | sampled T=1 top-p 0.95 | 3 | 2 | 0.500 ± 0.408 |" in markdown
    assert "| g | greedy | 1 | 2 | 1.000 | 1.000 | — |" in markdown


def test_report_json_round_trip(tmp_path):
    import json

    scores = [score_policy_episode(r, e, ROUTER_R1_POOL) for r, e in CASES]
    rows = [MethodResult.from_scores("policy: x", "policy", GREEDY, [0], [scores]),
            MethodResult.from_scores("single", "baseline", CANDIDATES_DECODE, [0], [scores[:1]])]
    json_path, md_path = EvalReport(rows, {"dataset": "toy"}).write(str(tmp_path / "out"))
    data = json.load(open(json_path))
    assert [m["name"] for m in data["methods"]] == ["policy: x", "single"]
    assert data["methods"][0]["summary"]["nq"]["em"] == {"mean": 0.5, "std": 0.0}
    assert len(data["methods"][0]["episodes"][0]) == 4 and data["methods"][0]["episodes"][0][2]["calls"] == 2
    assert data["methods"][0]["episodes"][0][1]["response"] == "<answer> London </answer>"
    text = open(md_path).read()
    assert "## EM per data_source" in text and "| policy: x | greedy | 0.500 | 0.500 |" in text
    assert EvalReport(rows, {}).method("single").kind == "baseline"
    with pytest.raises(KeyError, match="no method 'nope'"):
        EvalReport(rows, {}).method("nope")
