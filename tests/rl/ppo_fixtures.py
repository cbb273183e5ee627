"""Shared test fixtures for the trainer tests: a tiny f32 actor/critic and random multi-turn trajectories."""
from __future__ import annotations

import functools

import jax
import numpy as np

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.critic import critic_from_policy
from rr1_jax.model.transformer import init_model
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig
from rr1_jax.rollout.trajectory import build_trajectories

PAD = 0
PROMPT_WIDTH = 12
RESPONSE_WIDTH = 28


def tiny_models(seed: int = 0, with_critic: bool = True):
    actor = init_model(ModelConfig.tiny(), seed)
    critic = critic_from_policy(actor, seed=seed + 1, head_std=0.02) if with_critic else None
    return actor, critic


def random_trajectories(rows: int = 8, real_rows: int = 6, seed: int = 0, vocab: int = 512,
                        prompt_width: int = PROMPT_WIDTH, response_width: int = RESPONSE_WIDTH,
                        lengths=None):
    """Rows of [prompt | policy turn, observation span, policy turn]; `rows - real_rows` dummy rows pad the batch.

    Lengths differ a lot between rows (so per-micro-batch token means differ from the global one).
    """
    rng = np.random.default_rng(seed)
    prompts, responses, flags, logps = [], [], [], []
    for i in range(real_rows):
        prompts.append(rng.integers(1, vocab, rng.integers(3, prompt_width + 1)).tolist())
        total = int(lengths[i]) if lengths is not None else int(rng.integers(4, response_width + 1))
        obs_len = int(rng.integers(1, max(2, total // 3)))
        first = int(rng.integers(1, max(2, total - obs_len)))
        first = min(first, total - obs_len - 1) if total - obs_len > 1 else 0
        row_flags = [True] * first + [False] * obs_len + [True] * (total - first - obs_len)
        responses.append(rng.integers(1, vocab, total).tolist())
        flags.append(row_flags)
        logps.append((-rng.random(total) * 5).tolist())
    return build_trajectories(prompts, responses, flags, logps, prompt_width, response_width, PAD, num_rows=rows)


def ppo_config(**overrides) -> PPOConfig:
    base = dict(mini_batch_size=4, micro_batch_size=2, logprob_chunk=8)
    base.update(overrides)
    return PPOConfig(**base)


ACTOR_OPTIM = OptimConfig(lr=1e-3)  # large enough that one step visibly moves a tiny random model
CRITIC_OPTIM = OptimConfig(lr=1e-3)


SCORES = np.array([1.0, 0.0, -1.0, 1.0, 0.0, 1.0, 0.0, 0.0], np.float32)  # last two rows are dummies


@functools.lru_cache(maxsize=None)
def gae_trainer():
    """A GAE trainer with one iteration of critic warmup, shared by the trainer and checkpoint tests."""
    from rr1_jax.rl.trainer import PPOTrainer

    actor, critic = tiny_models()
    return PPOTrainer(actor, critic, ppo_config(critic_warmup=1), ACTOR_OPTIM, CRITIC_OPTIM, seed=0)


@functools.lru_cache(maxsize=None)
def grpo_trainer():
    from rr1_jax.rl.trainer import PPOTrainer

    actor, _ = tiny_models(with_critic=False)
    return PPOTrainer(actor, None, ppo_config(adv_estimator="grpo", shuffle=True), ACTOR_OPTIM, seed=0)


def params_copy(tree):
    return jax.tree.map(lambda x: np.array(jax.device_get(x)), tree)


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
