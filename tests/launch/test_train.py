"""launch/train.py end to end on configs/tiny.py: rollout against the simulated server → PPO update, resume."""
import json
import math
import os

import jax
import pytest
from flax import nnx

from configs import tiny
from rr1_jax.config_overrides import apply_overrides
from rr1_jax.rl.loop import train
from rr1_jax.run_export import load_run_policy


@pytest.mark.slow
def test_two_iterations_then_resume(tmp_path):
    config = tiny.get_config()
    config.reward.update(dict(early_alpha=0.5, early_steps=2))  # cost-first curriculum: iterations 1-2 at 0.5
    summary = train(config, str(tmp_path))
    assert int(jax.device_get(summary["state"].step)) == 2
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2]
    for row in lines:
        assert all(map(math.isfinite, row.values())), row  # finite losses and metrics
        assert {"episode/reward", "episode/em", "critic/vf_loss", "actor/pg_loss", "perf/tokens"} <= set(row)
        calls = [v for k, v in row.items() if k.startswith("calls/")]  # per candidate, every pool name
        assert len(calls) == 6 and sum(calls) <= row["episode/routes"] + 1e-9
    assert lines[0]["perf/compiles"] > 0 and lines[1]["perf/compiles"] == 0  # the second iteration compiles nothing
    assert 0.1 < lines[0]["perf/peak_rss_rollout_gb"] <= lines[0]["perf/peak_rss_gb"] <= lines[1]["perf/peak_rss_gb"]
    assert sorted(os.listdir(tmp_path / "ckpt"))[-1] == "2"
    exported = load_run_policy(str(tmp_path))  # what launch/export.py and eval read: the TrainState's actor
    assert exported.step == 2 and exported.source == "tiny"
    for a, b in zip(jax.tree.leaves(nnx.split(exported.model, nnx.Param)[1]), jax.tree.leaves(summary["state"].actor)):
        assert (a == jax.device_get(b)).all()
    config.unlock()
    config.train.total_steps = 3
    resumed = train(config, str(tmp_path))
    assert resumed["start_step"] == 2
    assert int(jax.device_get(resumed["state"].step)) == 3
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert [x["reward/alpha"] for x in lines] == [0.5, 0.5, config.reward.alpha]  # the schedule survives a resume


@pytest.mark.slow
def test_resume_restores_the_warm_start_instead_of_training_it_again(tmp_path):
    """The checkpoint holds the warm-started actor and its reference: a resumed run skips the SFT (minutes on
    the demo) and continues exactly as a straight run, also when it stopped before its first PPO save."""
    config = tiny.get_config()
    config.sft.update(dict(steps=3, batch_size=4, num_demos=16, copy_steps=2, copy_batch_size=4))
    config.train.total_steps = 2
    straight = train(config, str(tmp_path / "straight"))
    config.train.total_steps = 1
    first = train(config, str(tmp_path / "resumed"))
    assert len(first["sft_losses"]) == 3 and len(first["copy_losses"]) == 2
    assert set(first["seconds"]) == {"copy warm-up", "SFT", "PPO iterations", "validation"}
    assert first["seconds"]["validation"] == 0.0  # tiny.py validates never (val_every=0)
    assert all(first["seconds"][phase] > 0 for phase in ("copy warm-up", "SFT", "PPO iterations"))
    config.train.total_steps = 2
    resumed = train(config, str(tmp_path / "resumed"))
    assert resumed["start_step"] == 1 and resumed["sft_losses"] == [] and resumed["copy_losses"] == []
    assert resumed["seconds"]["copy warm-up"] == resumed["seconds"]["SFT"] == 0.0  # no second warm start
    for a, b in zip(jax.tree.leaves(straight["state"]), jax.tree.leaves(resumed["state"])):
        assert (jax.device_get(a) == jax.device_get(b)).all()
    rows = {name: [json.loads(x) for x in open(tmp_path / name / "metrics.jsonl")] for name in ("straight", "resumed")}
    assert [r["step"] for r in rows["resumed"]] == [1, 2]
    untimed = lambda row: {k: v for k, v in row.items() if not k.startswith("perf/") and k != "time"}  # noqa: E731
    for one, two in zip(rows["straight"], rows["resumed"]):  # the same episodes, losses and metrics
        assert untimed(one) == untimed(two)
    # stopped before its first PPO save: the warm start was kept as step 0, so the rerun skips the SFT too
    config.train.total_steps = 0
    assert train(config, str(tmp_path / "stopped"))["sft_losses"]
    assert os.listdir(tmp_path / "stopped" / "ckpt") == ["0"]
    config.train.total_steps = 2
    rerun = train(config, str(tmp_path / "stopped"))
    assert rerun["start_step"] == 0 and rerun["sft_losses"] == [] and rerun["copy_losses"] == []
    for a, b in zip(jax.tree.leaves(straight["state"]), jax.tree.leaves(rerun["state"])):
        assert (jax.device_get(a) == jax.device_get(b)).all()


def test_grpo_groups_of_n_agent_episodes_per_prompt(tmp_path, monkeypatch):
    from rr1_jax.rl.run_setup import Run

    validations, validate = [], Run.validate

    async def counted(self, *args):  # validations run: before PPO, after step 1; the summary's "after" reuses it
        validations.append(args[-1])
        return await validate(self, *args)

    monkeypatch.setattr(Run, "validate", counted)
    config = tiny.get_config()
    refused = [  # each row's changes on top of the previous rows', and the error they get before any work
        ({"ppo.adv_estimator": "grpo", "ppo.mini_batch_size": 4, "data.batch_size": 4}, "rollout.n_agent >= 2"),
        ({"ppo.mini_batch_size": 8, "rollout.n_agent": 3}, "4 x 3 episodes"),
        # 4 x 16 policy + 3 x 32 observation tokens > the one bucket of 128
        ({"rollout.n_agent": 2, "rollout.max_turns": 3}, "add a bucket >= 160"),
        ({"rollout.max_turns": 1, "rollout.slots_per_wave": 3}, "slots_per_wave=3 must divide the 8 episodes"),
    ]
    for k, (changes, message) in enumerate(refused):
        apply_overrides(config, changes.items())
        with pytest.raises(ValueError, match=message):
            train(config, str(tmp_path / f"refused_{k}"))
    # 8 episodes in 2 waves of 4 from the training-layout weights (tests/rollout: the same draws as one wave)
    config.rollout.update(dict(slots_per_wave=4, decode_from_train_shards=True))
    config.train.update(dict(total_steps=1, val_every=1))
    summary = train(config, str(tmp_path / "grpo"))
    assert int(jax.device_get(summary["state"].step)) == 1
    assert len(validations) == 2 and summary["after"] is not None
    (row,) = [json.loads(x) for x in open(tmp_path / "grpo" / "metrics.jsonl")]
    assert all(map(math.isfinite, row.values())), row
    assert "critic/vf_loss" not in row and row["actor/updated"] == 1
    assert row["perf/tokens"] > 0
    # resumed for one more iteration: the summary's "before" is the first run's, not validated again
    config.train.total_steps = 2
    resumed = train(config, str(tmp_path / "grpo"))
    assert resumed["start_step"] == 1 and len(validations) == 3  # only the new "after"
    assert resumed["before"].to_dict() == summary["before"].to_dict()


def test_sigterm_saves_and_stops_without_final_validation_or_export(tmp_path, monkeypatch):
    import signal

    import rr1_jax.rl.loop as loop

    scored = loop.score_episodes

    def score_then_get_preempted(*args, **kwargs):  # the signal arrives mid-iteration, during scoring
        os.kill(os.getpid(), signal.SIGTERM)
        return scored(*args, **kwargs)

    monkeypatch.setattr(loop, "score_episodes", score_then_get_preempted)
    previous = signal.getsignal(signal.SIGTERM)
    config = tiny.get_config()
    config.train.update(dict(total_steps=3, val_every=3, export_hf=True))  # "before" runs; step 3 is never reached
    summary = train(config, str(tmp_path))
    assert summary["preempted"] and int(jax.device_get(summary["state"].step)) == 1  # the iteration completed
    assert "before" in summary and "after" not in summary and "export" not in summary
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["1"] and not os.path.exists(tmp_path / "hf_export")
    assert signal.getsignal(signal.SIGTERM) is previous  # the guard's handler is gone again

