"""Exact resume through an orbax checkpoint, corrupted-step fallback, keep policy, pre-emption flag, HF export."""
import gc
import glob
import json
import os
import signal
import time
import warnings

import jax
import numpy as np
import pytest

from rr1_jax.checkpoint import CheckpointError, PreemptionGuard, TrainCheckpointer, export_hf
from rr1_jax.data.batching import QABatchIterator
from rr1_jax.data.qa import QARecord
from rr1_jax.rl.rewards import CostNormalizer
from tests.rl.ppo_fixtures import SCORES, gae_trainer, max_abs_diff, params_copy, random_trajectories, tiny_models


def _rollouts(k):
    return [(random_trajectories(seed=10 + i), np.roll(SCORES[:6], i).tolist() + [0.0, 0.0]) for i in range(k)]


def _records():
    return [QARecord(id=str(i), question=f"q{i}", golden_answers=[f"a{i}"], data_source="nq") for i in range(10)]


@pytest.mark.slow
def test_resume_from_checkpoint_is_exact(tmp_path):
    trainer = gae_trainer()
    rollouts = _rollouts(4)

    state = trainer.init_state()
    straight = []
    for traj, scores in rollouts:
        state, metrics = trainer.ppo_iteration(state, traj, scores)
        straight.append(metrics)
    want = params_copy((state.actor, state.critic, state.actor_opt, state.critic_opt, state.kl_ctrl))

    data, costs = QABatchIterator(_records(), 2, seed=3), CostNormalizer(window=8)
    state = trainer.init_state()
    for traj, scores in rollouts[:2]:
        next(data)
        costs.normalize_batch([0.1, 2.0, 0.5])
        state, _ = trainer.ppo_iteration(state, traj, scores)
    checkpointer = TrainCheckpointer(str(tmp_path / "ckpt"), keep=2)
    checkpointer.save(2, state, data_state=data.state_dict(), cost_normalizer=costs.state_dict(),
                      config={"ppo": {"clip_ratio": 0.2}, "router": {"api_key": "sk-secret"}})
    checkpointer.close()
    expected_batch = [r.id for r in next(data).records]
    del state, data, costs

    # a fresh "process": new state objects, a new manager, state restored onto abstract sharded targets
    fresh = trainer.init_state()
    step, state, extras = TrainCheckpointer(str(tmp_path / "ckpt")).restore(trainer.abstract_state())
    assert step == 2 and int(state.step) == 2 and extras["metrics_step"] == 2
    assert max_abs_diff(state.ref, fresh.ref) == 0.0
    data, costs = QABatchIterator(_records(), 2, seed=3), CostNormalizer(window=8)
    data.load_state_dict(extras["data"])
    costs.load_state_dict(extras["cost_normalizer"])
    assert [r.id for r in next(data).records] == expected_batch and len(costs) == 6
    resumed = []
    for traj, scores in rollouts[2:]:
        state, metrics = trainer.ppo_iteration(state, traj, scores)
        resumed.append(metrics)
    got = params_copy((state.actor, state.critic, state.actor_opt, state.critic_opt, state.kl_ctrl))
    assert max_abs_diff(got, want) == 0.0
    assert resumed == straight[2:]
    saved = json.dumps(extras)
    assert "sk-secret" not in saved and extras["config"]["router"]["api_key"] == "<redacted>"


# A failed restore leaves tensorstore reads in flight whose callbacks reach orbax's event loop after it closed
# ("Event loop is closed", reported as unraisable): harmless here, and collected below so no later test sees them.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_truncated_checkpoint_falls_back_to_previous(tmp_path):
    trainer = gae_trainer()
    checkpointer = TrainCheckpointer(str(tmp_path / "ckpt"), keep=3)
    states = {}
    for step in (1, 2):
        state = trainer.init_state()
        state = state.replace(step=jax.device_put(np.int32(step), state.step.sharding))
        states[step] = params_copy(state.actor)
        checkpointer.save(step, state, data_state={"position": step})
    checkpointer.wait()
    files = glob.glob(str(tmp_path / "ckpt" / "2" / "state" / "**" / "d" / "*"), recursive=True)
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)
    with pytest.warns(RuntimeWarning, match="step 2 .* could not be restored"):
        step, state, extras = checkpointer.restore(trainer.abstract_state())
    assert step == 1 and int(state.step) == 1 and extras["data"] == {"position": 1}
    assert max_abs_diff(state.actor, states[1]) == 0.0
    # the bad step is kept aside, so the resumed run saves step 2 again instead of skipping it
    assert checkpointer.all_steps() == [1] and os.path.isdir(tmp_path / "ckpt" / "unreadable-2")
    assert checkpointer.save(2, state, data_state={"position": 22})
    checkpointer.wait()
    assert checkpointer.restore(trainer.abstract_state())[2]["data"] == {"position": 22}
    for path in glob.glob(str(tmp_path / "ckpt" / "[12]" / "state" / "**" / "d" / "*"), recursive=True):
        os.truncate(path, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="could be restored"):
            checkpointer.restore(trainer.abstract_state())
    checkpointer.close()
    assert TrainCheckpointer(str(tmp_path / "empty")).restore(trainer.abstract_state()) is None
    time.sleep(0.5)  # let the abandoned reads finish
    gc.collect()


def test_keep_policy_and_save_interval(tmp_path):
    trainer = gae_trainer()
    checkpointer = TrainCheckpointer(str(tmp_path / "ckpt"), keep=2, save_every=2)
    state = trainer.init_state()
    saved = [checkpointer.save(step, state) for step in range(1, 7)]
    checkpointer.wait()
    assert saved == [True, True, False, True, False, True]  # orbax always saves a directory's first step
    assert checkpointer.all_steps() == [4, 6]
    assert checkpointer.save(7, state, force=True)  # a pre-emption save ignores the interval
    checkpointer.close()
    assert TrainCheckpointer(str(tmp_path / "ckpt")).latest_step() == 7


def test_sigterm_sets_the_final_save_flag():
    seen = []
    previous = signal.getsignal(signal.SIGTERM)
    guard = PreemptionGuard(on_signal=seen.append).install()
    try:
        assert not guard.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested and seen == [signal.SIGTERM]
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGTERM) is previous


def test_export_hf_round_trip(tmp_path):
    from rr1_jax.model.weights import load_hf_model

    actor, _ = tiny_models()
    out = export_hf(actor, str(tmp_path / "hf"))
    assert os.path.isfile(os.path.join(out, "config.json")) and os.path.isfile(os.path.join(out, "model.safetensors"))
    loaded = load_hf_model(out)
    np.testing.assert_array_equal(np.asarray(loaded.layers.q_proj[...]), np.asarray(actor.layers.q_proj[...]))
