"""Metrics sinks: JSONL lines, TensorBoard events, PNG plots; silent on non-zero processes; no secrets written."""
import glob
import json
import os

import pytest

from rr1_jax.metrics import MetricsLogger, redact_secrets


def _episode(step):
    return {"episode/reward": 0.1 * step, "episode/em": 0.05 * step, "episode/cost": 1.0 / step,
            "episode/routes": 1.5, "perf/tokens": 1000.0, "actor/pg_loss": -0.01 * step, "router_api_key": 123.0}


def _all_text(root):
    text = ""
    for path in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        if os.path.isfile(path) and not path.endswith(".png"):
            with open(path, "rb") as f:
                text += f.read().decode("latin-1")
    return text


def test_jsonl_tensorboard_and_plots(tmp_path):
    config = {"ppo": {"clip_ratio": 0.2}, "router": {"api_key": "sk-do-not-log", "base_url": "http://x"}}
    logger = MetricsLogger(str(tmp_path / "run"), total_steps=3, config=config, process_index=0)
    for step in (1, 2, 3):
        logger.log(step, _episode(step))
    plots = logger.close()

    with open(tmp_path / "run" / "metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert lines[2]["episode/reward"] == pytest.approx(0.3) and "perf/tokens_per_s" in lines[1]
    assert "router_api_key" not in lines[0]
    assert glob.glob(str(tmp_path / "run" / "tb" / "events.out.tfevents.*"))
    assert sorted(os.path.basename(p) for p in plots) == ["cost.png", "exact_match.png", "reward.png", "routes.png"]
    for path in plots:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "sk-do-not-log" not in _all_text(str(tmp_path / "run"))
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["router"]["api_key"] == "<redacted>"


def test_non_zero_process_writes_nothing(tmp_path):
    logger = MetricsLogger(str(tmp_path / "run"), config={"a": 1}, process_index=1)
    logger.log(1, _episode(1))
    assert logger.close() == [] and not os.path.exists(tmp_path / "run")


def test_non_scalar_metric_is_a_clear_error(tmp_path):
    logger = MetricsLogger(str(tmp_path / "run"), tensorboard=False, progress=False, process_index=0)
    with pytest.raises(ValueError, match="'episode/text' is not a scalar"):
        logger.log(1, {"episode/text": "hello"})
    assert redact_secrets({"nested": [{"OPENAI_API_KEY": "x"}]}) == {"nested": [{"OPENAI_API_KEY": "<redacted>"}]}


def test_a_resumed_run_supersedes_the_rows_it_redoes(tmp_path):
    """Killed after step 3 with the newest checkpoint at step 2: the resumed run logs steps 3-4 once each, the
    interrupted run's step 3 moves aside, the bar starts at 2, and tokens/s is over each iteration's own time."""
    first = MetricsLogger(str(tmp_path), progress=False, process_index=0)
    for step in (1, 2, 3):
        first.log(step, {**_episode(step), "perf/iteration_s": 4.0})
    resumed = MetricsLogger(str(tmp_path), total_steps=4, start_step=2, process_index=0)
    assert resumed._bar.n == 2
    for step in (3, 4):
        resumed.log(step, {**_episode(step), "episode/reward": 9.0, "perf/iteration_s": 2.0})
    resumed.close()
    rows = resumed.history()
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and [r["episode/reward"] for r in rows[2:]] == [9.0, 9.0]
    assert [r["perf/tokens_per_s"] for r in rows] == [250.0, 250.0, 500.0, 500.0]
    with open(tmp_path / "metrics.superseded.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [3]
