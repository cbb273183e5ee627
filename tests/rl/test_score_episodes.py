"""The loop's episode scoring: rewards per row and the episode metrics (hand-made episodes, no model)."""
import types

import numpy as np
import pytest

from rr1_jax.data.qa import QARecord
from rr1_jax.rl.loop import score_episodes
from rr1_jax.rollout.candidates import ROUTER_R1_POOL
from rr1_jax.rollout.episode import EpisodeInfo

POOL = ROUTER_R1_POOL
QWEN, MIXTRAL = "Qwen2.5-7B-Instruct", "Mixtral-8x22B-Instruct"
GOOD = (f"<think>x</think>\n<search> {QWEN}: q </search>\n\n<information>Paris</information>\n\n"
        "<think>y</think>\n<answer> Paris </answer>")  # well formed, answers Paris
CFG = types.SimpleNamespace(alpha=0.0, metric="em", form="hierarchical")  # the reward's settings but alpha


def _episode(text: str, *candidates):
    routes = [types.SimpleNamespace(candidate=c) for c in candidates]  # scoring reads only the resolved name
    return EpisodeInfo(response_text=text, routes=routes, cost=10.0 * len(routes))


def test_rewards_and_calls_per_candidate():
    records = [QARecord(id=str(i), question="q", golden_answers=["Paris"], data_source="t") for i in range(3)]
    episodes = [_episode(GOOD, QWEN), _episode("no tags", QWEN, MIXTRAL, None), _episode(GOOD, QWEN)]
    episodes[1].response_cut = True  # longer than rollout.max_response_tokens
    scores, m = score_episodes(records, episodes, POOL, lambda cost: 0.0, CFG, num_rows=4, alpha=0.0)
    assert m["episode/response_cut"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(scores, [1.0, -1.0, 1.0, 0.0])  # the dummy fourth row scores 0
    assert m["episode/format_ok"] == pytest.approx(2 / 3) and m["episode/routes"] == pytest.approx(5 / 3)
    assert m[f"calls/{QWEN}"] == 1.0 and m[f"calls/{MIXTRAL}"] == pytest.approx(1 / 3)
    assert {k for k in m if k.startswith("calls/")} == {f"calls/{name}" for name in POOL.names}  # all, even 0
    assert sum(v for k, v in m.items() if k.startswith("calls/")) == pytest.approx(4 / 3)  # unknown name: no key


def test_the_iterations_alpha_not_the_configs_prices_the_cost():
    """The loop passes `scheduled_alpha`'s value: a cost-first iteration pays a correct answer
    (1 - alpha) + alpha * cost_reward, whatever `reward_cfg.alpha` says."""
    wrong = GOOD.replace("<answer> Paris", "<answer> Rome")
    records = [QARecord(id=str(i), question="q", golden_answers=["Paris"], data_source="t") for i in range(2)]
    episodes = [_episode(GOOD, QWEN), _episode(wrong, QWEN)]
    scores, m = score_episodes(records, episodes, POOL, lambda cost: 0.25, CFG, num_rows=2, alpha=0.9)
    np.testing.assert_allclose(scores, [0.1 + 0.9 * 0.25, 0.0])  # a wrong answer earns nothing at any alpha
    assert m["reward/alpha"] == 0.9
