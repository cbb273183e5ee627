"""Every shipped config builds, carries upstream's PPO settings where it claims to, and fails clearly when
its weights path is unset."""
import importlib
import os
import subprocess
import sys

import pytest

from rr1_jax.model.hf_config import WeightsError
from rr1_jax.model.weights import resolve_model_path
from rr1_jax.parallel.memory import TrainingSetup
from rr1_jax.rl.ppo_config import optim_config_from, ppo_config_from
from rr1_jax.rl.run_setup import check_response_fits

CONFIGS = ["base", "tiny", "demo", "smollm2", "llama3b", "qwen3b"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_typed_sections(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    ppo = ppo_config_from(config.ppo)
    optim_config_from(config.optim.actor, "optim.actor")
    assert (config.data.batch_size * config.rollout.n_agent) % ppo.mini_batch_size == 0  # episodes per iteration


@pytest.mark.parametrize("name", ["llama3b", "qwen3b"])
def test_upstream_configs(name, monkeypatch):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert (config.data.batch_size, config.ppo.mini_batch_size, config.rollout.max_turns) == (64, 32, 4)
    assert (config.rollout.max_turn_tokens, config.rollout.max_obs_length, config.rollout.top_p) == (1024, 600, 0.95)
    assert (config.optim.actor.lr, config.optim.critic.lr, config.ppo.kl_coef) == (1e-6, 1e-5, 0.001)
    # qa_train_merge.py / qa_test_merge.py: NQ + HotpotQA, 7,000 and 100 per source; NQ validates on its test split
    assert (config.data.train_per_source, config.data.val_per_source, config.data.val_size) == (7000, 100, 200)
    assert config.data.val_source == "data/nq/test.jsonl,data/hotpotqa/dev.jsonl"
    # prompt 4096 / start 2048: responses keep their first 4096 tokens, the rows docs/scaling.md's memory plan sizes
    assert (config.rollout.max_prompt_tokens, config.rollout.max_response_tokens) == (2048, 4096)
    assert max(config.rollout.response_buckets) == TrainingSetup.router_r1().response_len == 4096
    check_response_fits(config.rollout)
    monkeypatch.delenv(config.model.path.lstrip("$"), raising=False)
    with pytest.raises(WeightsError, match="environment variable is not set"):
        resolve_model_path(config.model.path)


def test_response_buckets_need_only_hold_the_cut_response():
    r = importlib.import_module("configs.tiny").get_config().rollout
    r.max_turns = 3  # 4 x 16 policy + 3 x 32 observation tokens > the one bucket of 128
    with pytest.raises(ValueError, match="add a bucket >= 160"):
        check_response_fits(r)
    r.max_response_tokens = 128  # trained responses cut to 128 tokens fit it
    check_response_fits(r)
    r.max_response_tokens = -1
    with pytest.raises(ValueError, match="max_response_tokens=-1 must be >= 0"):
        check_response_fits(r)


def test_unknown_ppo_key_is_named():
    config = importlib.import_module("configs.tiny").get_config()
    config.ppo.clip_eps = 0.3
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['clip_eps'\] in config.ppo"):
        ppo_config_from(config.ppo)


def test_ppo_temperature_follows_the_rollout():
    config = importlib.import_module("configs.tiny").get_config()
    config.rollout.temperature = 0.7
    assert ppo_config_from(config.ppo, rollout_temperature=config.rollout.temperature).temperature == 0.7
    config.ppo.temperature = 0.7  # the same value, spelled out: fine
    assert ppo_config_from(config.ppo, rollout_temperature=0.7).temperature == 0.7
    config.ppo.temperature = 1.0  # log-probs of another distribution than the one sampled: refused
    with pytest.raises(ValueError, match=r"ppo.temperature=1.0 differs from rollout.temperature=0.7"):
        ppo_config_from(config.ppo, rollout_temperature=0.7)


def test_train_reports_missing_data_in_one_line(tmp_path):
    """Bad input through the command line: exit status 1 and one message naming the files and the fix."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, os.path.join(root, "launch", "train.py"),
                           f"--config={os.path.join(root, 'configs', 'qwen3b.py')}", f"--workdir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: data.source: no such file: data/nq/train.jsonl, data/hotpotqa/train.jsonl (relative paths start at "
        f"{tmp_path}); prepare the QA files as in docs/data.md, or point --config.data.source at them")
