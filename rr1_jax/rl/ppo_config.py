"""Typed PPO / optimiser settings (built from the `config.ppo` and `config.optim` sections) with upstream defaults.

Defaults are Router-R1's `train.sh` on verl 0.1 (spec ppo-semantics §8), except where a field's comment says why.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from rr1_jax.rl.kl import KL_KINDS

ADV_ESTIMATORS = ("gae", "grpo")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with global-norm clipping and a per-PPO-iteration learning-rate schedule.

    lr(k) = lr · min(1, (k + 1) / max(1, warmup_steps)), k = number of updates this model already had.
    `upstream_zero_first_lr=True` reproduces verl's LambdaLR quirk lr(k) = lr · min(1, k / max(1, W)): the very
    first update runs at lr 0 (Adam moments still advance; verl issue #3674). Off by default.
    """

    lr: float = 1e-6
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_steps: int = 0  # upstream: int(lr_warmup_steps_ratio · total_training_steps); Router-R1 uses 0
    upstream_zero_first_lr: bool = False
    frozen: tuple[str, ...] = ()  # top-level parameter names never updated (e.g. ("embed",)); see train_state

    def __post_init__(self):
        if not self.lr >= 0 or self.warmup_steps < 0 or not self.grad_clip > 0:
            raise ValueError(f"optimizer config needs lr >= 0, warmup_steps >= 0 and grad_clip > 0, got {self}")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """One PPO iteration's algorithm settings. Batch sizes count trajectory rows."""

    adv_estimator: str = "gae"  # "gae" (with critic) | "grpo" (no critic, group-normalised outcome)
    grpo_norm_by_std: bool = True  # grpo: divide by the group's std (upstream); False: mean-centred only (Dr. GRPO)
    gamma: float = 1.0
    lam: float = 1.0
    bridge_observations: bool = False  # GAE skips observation tokens (later-verl multi-turn variant); upstream off
    clip_ratio: float = 0.2
    cliprange_value: float = 0.5
    entropy_coeff: float = 0.001
    kl_ctrl: str = "fixed"  # "fixed" | "adaptive"
    kl_coef: float = 0.001
    kl_target: Optional[float] = None  # adaptive controller only
    kl_horizon: Optional[float] = None  # adaptive controller only
    kl_penalty: str = "kl"  # estimator of the in-reward KL
    use_kl_loss: Optional[bool] = None  # None: True for grpo, False for gae (upstream scripts)
    kl_loss_coef: float = 0.001
    kl_loss_type: str = "low_var_kl"
    # Every this many iterations the KL anchor (reference policy) becomes the current actor; 0 = never (upstream).
    # A fixed anchor caps how far the policy can move (the KL-regularised optimum is π_ref·exp(Q/β)); a refreshed
    # one makes the KL a proximal term, so k refreshes compound to π_0·exp(kQ/β) (mirror-descent policy iteration).
    ref_refresh_every: int = 0
    temperature: float = 1.0  # rollout temperature: old/ref/current log-probs all use logits / temperature
    state_masking: bool = True  # policy loss/entropy/KL on policy tokens only (Router-R1: true)
    mini_batch_size: int = 32  # rows per optimizer step
    micro_batch_size: int = 8  # rows per gradient-accumulation chunk (and per log-prob/value forward chunk)
    ppo_epochs: int = 1  # upstream makes exactly one pass whatever the YAML says
    shuffle: bool = False  # upstream: contiguous mini-batches, no shuffle
    # Forwards and updates run on packed rows (episodes laid out first-fit, segment-masked): the same loss sums
    # on fewer tokens (verl's use_remove_padding, set in all upstream scripts; rl/packed_updates.py). Off here so
    # the plain layout stays the reference the maths is tested in; configs/base.py turns it on.
    pack_updates: bool = False
    critic_warmup: int = 0  # the actor is not updated during the first `critic_warmup` iterations
    recompute_old_logprobs: bool = True  # upstream recomputes π_old with the actor; False: use rollout log-probs
    logprob_chunk: int = 256  # sequence chunk of the chunked LM head

    def __post_init__(self):
        if self.adv_estimator not in ADV_ESTIMATORS:
            raise ValueError(f"ppo.adv_estimator={self.adv_estimator!r}: choose one of {ADV_ESTIMATORS}")
        for name in ("kl_penalty", "kl_loss_type"):
            if getattr(self, name) not in KL_KINDS:
                raise ValueError(f"ppo.{name}={getattr(self, name)!r}: choose one of {KL_KINDS}")
        if self.kl_ctrl not in ("fixed", "adaptive"):
            raise ValueError(f"ppo.kl_ctrl={self.kl_ctrl!r}: choose 'fixed' or 'adaptive'")
        if self.mini_batch_size < 1 or self.micro_batch_size < 1 or self.mini_batch_size % self.micro_batch_size:
            raise ValueError(f"ppo.mini_batch_size={self.mini_batch_size} must be a positive multiple of "
                             f"ppo.micro_batch_size={self.micro_batch_size}")
        if self.ppo_epochs < 1 or self.critic_warmup < 0 or not self.temperature > 0:
            raise ValueError("ppo.ppo_epochs must be >= 1, ppo.critic_warmup >= 0 and ppo.temperature > 0")
        if self.ref_refresh_every < 0:
            raise ValueError(f"ppo.ref_refresh_every={self.ref_refresh_every} must be >= 0 (0: never refresh)")
        if not (self.recompute_old_logprobs or self.state_masking):
            raise ValueError("ppo.recompute_old_logprobs=False needs ppo.state_masking=True: the rollout records "
                             "log-probs of sampled tokens only, so observation tokens would get an old log-prob of 0")

    @property
    def uses_critic(self) -> bool:
        return self.adv_estimator == "gae"

    @property
    def kl_in_loss(self) -> bool:
        return self.adv_estimator == "grpo" if self.use_kl_loss is None else bool(self.use_kl_loss)


def _from_mapping(cls, section: Optional[Mapping[str, Any]], where: str):
    values = dict(section or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in config.{where}; valid keys: {sorted(known)}")
    return cls(**values)


def ppo_config_from(section: Optional[Mapping[str, Any]], rollout_temperature: Optional[float] = None) -> PPOConfig:
    """A PPOConfig from a `config.ppo` ConfigDict/dict (unknown keys are an error naming the valid ones).

    An unset `temperature` follows `rollout_temperature`: old, reference and current log-probs must be those of
    the distribution the episodes were sampled from, so a different explicit value is an error.
    """
    values = dict((section.to_dict() if hasattr(section, "to_dict") else section) or {})
    temperature = values.pop("temperature", None)
    if temperature is not None and rollout_temperature is not None and temperature != rollout_temperature:
        raise ValueError(f"ppo.temperature={temperature} differs from rollout.temperature={rollout_temperature}: "
                         "PPO's log-probs must use the temperature the episodes were sampled at; leave "
                         "ppo.temperature unset and it follows rollout.temperature")
    temperature = temperature if temperature is not None else rollout_temperature
    if temperature is not None:
        values["temperature"] = temperature
    return _from_mapping(PPOConfig, values, "ppo")


def optim_config_from(section: Optional[Mapping[str, Any]], where: str = "optim.actor") -> OptimConfig:
    """An OptimConfig from e.g. `config.optim.actor` or `config.optim.critic`."""
    return _from_mapping(OptimConfig, section.to_dict() if hasattr(section, "to_dict") else section, where)
