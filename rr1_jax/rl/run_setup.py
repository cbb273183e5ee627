"""Everything a training run needs before its first PPO iteration, built from a config.

    mesh → data → candidate pool → routing template → tokenizer → policy → (SFT warm start) → critic →
    PPOTrainer → rollout engine and greedy evaluator

`Run` holds the pieces; `rr1_jax.rl.loop` drives the iterations. Bad settings fail here, before any SFT or paid
call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Optional, Sequence

from flax import nnx

from rr1_jax.checkpoint import TrainCheckpointer
from rr1_jax.data.demonstrations import make_demonstrations
from rr1_jax.data.qa import QARecord
from rr1_jax.data.renaming import rename_some
from rr1_jax.data.sources import check_source_files, load_sources
from rr1_jax.data.synthetic import SyntheticConfig, SyntheticTask, make_synthetic_task
from rr1_jax.data.synthetic_candidates import default_candidates
from rr1_jax.data.synthetic_tokenizer import answer_phrases, task_corpus, train_task_tokenizer, train_word_tokenizer
from rr1_jax.eval.evaluate import GenerationSettings, LoadedPolicy, PolicyEvaluator
from rr1_jax.eval.report import GREEDY, MethodResult
from rr1_jax.generate.buckets import round_up
from rr1_jax.generate.sampling import SamplingParams
from rr1_jax.model.critic import critic_from_policy
from rr1_jax.model.tokenizer import check_tokenizer_matches, load_tokenizer
from rr1_jax.model.weights import model_from_config, resolve_model_path
from rr1_jax.parallel.mesh import mesh_from_config
from rr1_jax.parallel.multihost import HostLayout
from rr1_jax.rl.copy_warmup import copy_trajectories
from rr1_jax.rl.ppo_config import optim_config_from, ppo_config_from
from rr1_jax.rl.rewards import scheduled_alpha
from rr1_jax.rl.sft import SFTConfig, demonstration_trajectories, sft_train
from rr1_jax.rl.trainer import PPOTrainer
from rr1_jax.rollout.candidates import CandidatePool
from rr1_jax.rollout.policy import engine_policy
from rr1_jax.rollout.pool import PoolClient
from rr1_jax.rollout.pool_setup import open_pool
from rr1_jax.rollout.prompts import render_prompt, routing_template_for
from rr1_jax.rollout.worker import RolloutConfig
from rr1_jax.run_export import save_policy_spec


@dataclasses.dataclass
class RunData:
    train: list[QARecord]
    val: list[QARecord]
    task: Optional[SyntheticTask]


def load_run_data(config) -> RunData:
    """Training and validation questions as the config asks (synthetic task or QA files)."""
    d = config.data
    if d.source == "synthetic":
        s = d.synthetic
        task = make_synthetic_task(SyntheticConfig(
            seed=s.seed, num_train=s.num_train, num_test=s.num_test, countries_per_split=s.countries_per_split,
            companies_per_split=s.companies_per_split, albums_per_split=s.albums_per_split))
        return RunData(task.train, task.test[:d.val_size], task)
    train_files = check_source_files(d.source, "data.source")  # both specs checked before either is read
    val_files = check_source_files(d.val_source, "data.val_source")
    train = load_sources(train_files, d.train_per_source, key="data.source")
    val = load_sources(val_files, d.val_per_source, validation=True, key="data.val_source")
    return RunData(train, val[:d.val_size], None)


def build_tokenizer(config, data: RunData, template: str, names: Sequence[str] = ()):
    """The policy's tokenizer (with a pad token). `synthetic:<vocab>` trains a small BPE on the synthetic task,
    `synthetic:words` a word-level one (every word, tag, candidate name in `names` and multi-word answer one
    token).

    A policy exported from a synthetic-tokenizer run (`model.path` set) is loaded with the tokenizer saved next
    to it: a synthetic vocabulary depends on the task's size, so rebuilding it under other data settings would
    shift every token id.
    """
    spec = config.model.tokenizer or config.model.path
    if spec.startswith("synthetic:") and config.model.path:
        spec = config.model.path
    if spec.startswith("synthetic:"):
        if data.task is None:
            raise ValueError(f"model.tokenizer={spec!r} needs data.source='synthetic'")
        kind = spec.split(":", 1)[1]
        corpus = task_corpus(data.task, [template])
        tokenizer = (train_word_tokenizer(corpus, names, answer_phrases(data.task)) if kind == "words"
                     else train_task_tokenizer(corpus, int(kind)))
    else:
        tokenizer = load_tokenizer(resolve_model_path(spec))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # verl's choice for Llama-3 (no pad token)
    return tokenizer


def build_policy(config, mesh, tokenizer):
    """The policy module on the mesh; a randomly initialised `family` gets the tokenizer's vocabulary."""
    path = resolve_model_path(config.model.path)
    extra = {} if path or "vocab_size" in config.model.size else {"vocab_size": len(tokenizer)}
    model = model_from_config(config.model, mesh, seed=config.seed, **extra)
    check_tokenizer_matches(tokenizer, model.config, where=f"tokenizer for {config.model.path or config.model.family}")
    return model


def routing_template(config, pool: CandidatePool) -> str:
    """The routing prompt `config.prompt` names, for the config's policy."""
    return routing_template_for(pool, config.prompt.template, config.prompt.family,
                                config.model.path or config.model.family, key="prompt.template")


def warm_start_rows(tokenizer, data: RunData, template: str, config):
    """The warm start's training rows: (copy warm-up rows or None, demonstration rows, copy rows mixed into the
    demonstration steps or None), as many as `config.sft`'s step counts use."""
    s = config.sft
    copy_rows = (copy_trajectories(tokenizer, s.copy_steps * s.copy_batch_size, s.copy_length, s.seed, s.copy_gap)
                 if s.copy_steps else None)
    records = data.train[:s.num_demos]
    demos = make_demonstrations(records, data.task.table, default_candidates(), seed=s.seed, strategy=s.strategy,
                                style=s.style, direct_multihop=s.direct_multihop,
                                routes_per_question=s.routes_per_question)
    demos = rename_some(demos, data.task.table, s.rename, seed=s.seed)  # renamed records keep their ids
    prompts = {d.record.question: render_prompt(tokenizer, d.record.question, template) for d in demos}
    demo_rows = demonstration_trajectories(demos, tokenizer, lambda r: prompts[r.question],
                                           round_up(max(len(p) for p in prompts.values()), 64), None,
                                           tokenizer.pad_token_id, max_obs_length=config.rollout.max_obs_length)
    mix_rows = (copy_trajectories(tokenizer, s.steps * s.copy_mix, s.copy_length, s.seed + 1, s.copy_gap)
                if s.copy_mix else None)
    return copy_rows, demo_rows, mix_rows


@dataclasses.dataclass
class WarmStart:
    """The SFT warm start's result: the tuned module, per-step losses and wall seconds of both phases."""
    model: nnx.Module
    copy_losses: list[float]
    sft_losses: list[float]
    copy_s: float
    sft_s: float


def sft_warm_start(model, tokenizer, data: RunData, template: str, config) -> WarmStart:
    """Supervised warm start on synthetic-task demonstrations, after an optional copy warm-up."""
    s = config.sft
    if data.task is None:
        raise ValueError("sft.steps > 0 needs the synthetic task (data.source='synthetic') for demonstrations")
    sft_cfg = SFTConfig(lr=s.lr, steps=s.steps, batch_size=s.batch_size,
                        group_size=s.routes_per_question if s.balanced_batches else 1, warmup_steps=s.warmup_steps,
                        schedule=s.schedule, weight_decay=s.weight_decay, grad_clip=s.grad_clip,
                        logprob_chunk=s.logprob_chunk, seed=s.seed, frozen=tuple(config.model.frozen),
                        pack=s.pack)
    copy_rows, demo_rows, mix_rows = warm_start_rows(tokenizer, data, template, config)
    copy_losses, t0 = [], time.perf_counter()
    if copy_rows is not None:  # first learn to repeat sequences (copy_warmup.py), then the demonstrations
        copy_cfg = dataclasses.replace(sft_cfg, lr=s.copy_lr, steps=s.copy_steps, batch_size=s.copy_batch_size,
                                       group_size=1)
        params, copy_losses = sft_train(model, copy_rows, copy_cfg)
        model = nnx.merge(nnx.graphdef(model), params)
    t1 = time.perf_counter()
    params, losses = sft_train(model, demo_rows, sft_cfg, auxiliary=mix_rows, auxiliary_batch_size=s.copy_mix)
    return WarmStart(nnx.merge(nnx.graphdef(model), params), copy_losses, losses, t1 - t0, time.perf_counter() - t1)


def check_response_fits(r) -> None:
    """The longest trained response (an episode's, cut to `rollout.max_response_tokens`) must fit the largest
    `rollout.response_buckets` width."""
    if r.max_response_tokens < 0:
        raise ValueError(f"rollout.max_response_tokens={r.max_response_tokens} must be >= 0 (0: no cut)")
    episode = (r.max_turns + 1) * r.max_turn_tokens + r.max_turns * r.max_obs_length
    longest = min(episode, r.max_response_tokens or episode)
    if longest > max(r.response_buckets):
        raise ValueError(f"rollout.response_buckets={tuple(r.response_buckets)} cannot hold the longest trained "
                         f"response: {r.max_turns + 1} generations of max_turn_tokens={r.max_turn_tokens} and "
                         f"{r.max_turns} observations of max_obs_length={r.max_obs_length} are {episode} tokens, "
                         f"cut to rollout.max_response_tokens={r.max_response_tokens} (0: no cut); add a bucket "
                         f">= {longest} or lower those limits")


def check_waves(r, local_episodes: int, multi_process: bool) -> None:
    """`rollout.slots_per_wave` divides a process's episodes per batch; training-shard decoding is single-process."""
    if r.slots_per_wave < 0 or (r.slots_per_wave and local_episodes % r.slots_per_wave):
        raise ValueError(f"rollout.slots_per_wave={r.slots_per_wave} must divide the {local_episodes} episodes a "
                         f"process rolls out per batch (data.batch_size / processes x rollout.n_agent), or be 0")
    if r.decode_from_train_shards and multi_process:
        raise ValueError("rollout.decode_from_train_shards needs one process: with several, each decodes its own "
                         "episodes on its own devices from a local copy of the weights")


class Run:
    """The pieces of one training run after set-up (see `train`)."""

    def __init__(self, config, workdir: str):
        self.config, self.workdir = config, workdir
        c = config
        self.mesh = mesh_from_config(c.mesh)
        self.n_agent = c.rollout.n_agent  # episodes per prompt (a GRPO group), as upstream's rollout.n_agent
        # multi-host: this process's slots, decode mesh and collectives
        self.hosts = HostLayout(self.mesh, episodes_per_prompt=self.n_agent)
        self.data = load_run_data(c)
        if self.n_agent < 1 or (c.data.batch_size * self.n_agent) % c.ppo.mini_batch_size:
            raise ValueError(f"data.batch_size x rollout.n_agent = {c.data.batch_size} x {self.n_agent} episodes "
                             f"must be a positive multiple of ppo.mini_batch_size={c.ppo.mini_batch_size}")
        if c.ppo.adv_estimator == "grpo" and self.n_agent < 2:
            raise ValueError("ppo.adv_estimator='grpo' compares the episodes of one prompt: set rollout.n_agent >= 2 "
                             "(upstream's GRPO scripts use 5)")
        scheduled_alpha(c.reward.alpha, 0, c.reward.early_alpha, c.reward.early_steps)  # bad values fail here
        check_response_fits(c.rollout)  # before any SFT or paid call, not after a whole rollout
        self.local_episodes = self.hosts.local_batch_size(c.data.batch_size) * self.n_agent  # rows per iteration
        check_waves(c.rollout, self.local_episodes, self.hosts.multi)
        self.stack = contextlib.ExitStack()
        self.pool, self.pool_config = open_pool(c.pool, self.data.task, self.stack)
        self.template = routing_template(c, self.pool)
        self.tokenizer = build_tokenizer(c, self.data, self.template, self.pool.names)
        self.model = build_policy(c, self.mesh, self.tokenizer)
        if self.hosts.is_primary:  # lets launch/export.py and eval read any checkpoint step's actor
            save_policy_spec(workdir, self.model.config, self.tokenizer)
        # keyed by the question: a training and a validation question can share an id
        self.prompts = {r.question: render_prompt(self.tokenizer, r.question, self.template)
                        for r in self.data.train + self.data.val}
        longest = max(len(p) for p in self.prompts.values())
        if longest > c.rollout.max_prompt_tokens:
            raise ValueError(f"a prompt has {longest} tokens, more than rollout.max_prompt_tokens="
                             f"{c.rollout.max_prompt_tokens}; raise it")
        self.prompt_width = round_up(longest, 64)
        self.warm_start: Optional[WarmStart] = None
        self.validation_s = 0.0  # wall seconds spent in greedy validation
        self.checkpointer = TrainCheckpointer(os.path.join(workdir, "ckpt"), keep=c.checkpoint.keep,
                                              save_every=c.checkpoint.save_every, async_save=c.checkpoint.async_save)
        # A resumed run restores the warm-started actor and its reference from the checkpoint: no second SFT.
        resuming = self.checkpointer.latest_step() is not None
        if c.sft.steps > 0 and not resuming:
            self.warm_start = sft_warm_start(self.model, self.tokenizer, self.data, self.template, c)
            self.model = self.warm_start.model
        self.ppo = ppo_config_from(c.ppo, rollout_temperature=c.rollout.temperature)
        critic = critic_from_policy(self.model, seed=c.seed) if self.ppo.uses_critic else None
        actor_optim = dataclasses.replace(optim_config_from(c.optim.actor, "optim.actor"), frozen=tuple(c.model.frozen))
        self.trainer = PPOTrainer(self.model, critic, self.ppo, actor_optim,
                                  optim_config_from(c.optim.critic, "optim.critic"), self.mesh, seed=c.seed)
        self.initial_params = nnx.split(self.model, nnx.Param)[1]  # the policy before PPO (summary baseline)
        r = c.rollout
        self.rollout_config = RolloutConfig(
            max_turns=r.max_turns, max_obs_length=r.max_obs_length, segment_steps=r.segment_steps, mode=r.mode,
            prompt_buckets=(self.prompt_width,), response_buckets=tuple(r.response_buckets),
            max_response_tokens=r.max_response_tokens)
        self.engine = engine_policy(
            nnx.graphdef(self.model), self.initial_params, self.model.config, self.tokenizer,
            num_slots=r.slots_per_wave or self.local_episodes, max_turns=r.max_turns,
            max_turn_tokens=r.max_turn_tokens,
            prompt_buckets=[self.prompt_width], obs_buckets=[round_up(r.max_obs_length, 16)],
            sampling=SamplingParams(temperature=r.temperature, top_p=r.top_p))
        self.settings = GenerationSettings(num_slots=min(c.data.batch_size, r.slots_per_wave or c.data.batch_size),
                                           max_turns=r.max_turns,
                                           max_turn_tokens=r.max_turn_tokens, max_obs_length=r.max_obs_length,
                                           segment_steps=r.segment_steps, max_prompt_tokens=self.prompt_width)
        self.evaluator = PolicyEvaluator(
            LoadedPolicy("policy", nnx.graphdef(self.model), self.initial_params, self.model.config,
                         self.tokenizer, c.model.path or c.model.family), self.settings)

    async def validate(self, client: PoolClient, params, seed: int) -> Optional[MethodResult]:
        """Greedy validation; multi-host: every process makes the local weight copy, process 0 validates."""
        t0 = time.perf_counter()
        params = self.hosts.local_params(params)
        if not self.hosts.is_primary:
            return None
        self.evaluator.policy.params = params
        result = await self.evaluator.run(client, self.data.val, self.template, GREEDY, [seed], "policy",
                                          alpha=self.config.reward.alpha)
        self.validation_s += time.perf_counter() - t0
        return result
