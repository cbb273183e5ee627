"""launch/train.py end to end on configs/tiny.py: rollout against the simulated server → PPO update, resume."""
import json
import math
import os

import jax

from configs import tiny
from rr1_jax.rl.loop import train


def test_two_iterations_then_resume(tmp_path):
    config = tiny.get_config()
    summary = train(config, str(tmp_path))
    assert int(jax.device_get(summary["state"].step)) == 2
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2]
    for row in lines:
        assert all(map(math.isfinite, row.values())), row  # finite losses and metrics
        assert {"episode/reward", "episode/em", "critic/vf_loss", "actor/pg_loss", "perf/tokens"} <= set(row)
    assert lines[0]["perf/compiles"] > 0 and lines[1]["perf/compiles"] == 0  # the second iteration compiles nothing
    assert sorted(os.listdir(tmp_path / "ckpt"))[-1] == "2"
    config.unlock()
    config.train.total_steps = 3
    resumed = train(config, str(tmp_path))
    assert resumed["start_step"] == 2
    assert int(jax.device_get(resumed["state"].step)) == 3
    assert [json.loads(x)["step"] for x in open(tmp_path / "metrics.jsonl")] == [1, 2, 3]
