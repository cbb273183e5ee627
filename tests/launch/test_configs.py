"""Every shipped config builds, carries upstream's PPO settings where it claims to, and fails clearly when
its weights path is unset."""
import importlib

import pytest

from rr1_jax.model.hf_config import WeightsError
from rr1_jax.model.weights import resolve_model_path
from rr1_jax.rl.ppo_config import optim_config_from, ppo_config_from

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
    monkeypatch.delenv(config.model.path.lstrip("$"), raising=False)
    with pytest.raises(WeightsError, match="environment variable is not set"):
        resolve_model_path(config.model.path)


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
