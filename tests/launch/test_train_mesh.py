"""launch/train.py's loop on a 2x4 fake-device mesh (data=2, tensor=4): rollout against the simulated server ->
PPO update, finite metrics, and a second iteration that compiles nothing."""
import json
import math

import jax
import pytest

from configs import tiny
from rr1_jax.rl.loop import train


@pytest.mark.mesh
@pytest.mark.slow
def test_two_iterations_on_2x4_mesh(tmp_path, mesh_devices):
    config = tiny.get_config()
    config.mesh.update(dict(data=2, fsdp=1, tensor=4))
    summary = train(config, str(tmp_path))
    state = summary["state"]
    assert int(jax.device_get(state.step)) == 2
    kernel = jax.tree.leaves(state.actor)[0]
    assert len(kernel.sharding.device_set) == 8  # trained on the whole mesh
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2]
    for row in lines:
        assert all(map(math.isfinite, row.values())), row
    assert lines[0]["perf/compiles"] > 0 and lines[1]["perf/compiles"] == 0
