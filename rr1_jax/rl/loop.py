"""One Router-R1 training run: set-up from a config (`run_setup.Run`), then per iteration rollout → rewards → PPO.

    Run(config) → resume from the newest checkpoint
    for each iteration:  decode weights ← actor  ·  rollout (async, multi-turn, routed calls)
                         scores ← format ▸ EM ▸ cost  ·  state ← ppo_iteration(state, trajectories, scores)
                         metrics · checkpoint · periodic greedy validation
    → final checkpoint, HF export, plots, summary

Everything jitted lives in the trainer and the generation engine; this module is host control flow only, and
runs the same calls in the same order on every process.
"""
from __future__ import annotations

import asyncio
import collections
import os
import time
from typing import Optional

import numpy as np
from flax import nnx

from rr1_jax.checkpoint import PreemptionGuard, export_hf
from rr1_jax.data.batching import QABatchIterator
from rr1_jax.eval.report import MethodResult, read_method, write_method
from rr1_jax.eval.scoring import CALLS_PREFIX, score_policy_episode
from rr1_jax.generate.compile_count import count_compilations
from rr1_jax.metrics import MetricsLogger, peak_rss_gb
from rr1_jax.rl.rewards import CostNormalizer, scheduled_alpha
from rr1_jax.rl.run_setup import Run
from rr1_jax.rollout.candidates import CandidatePool
from rr1_jax.rollout.pool import PoolClient
from rr1_jax.rollout.waves import rollout_in_waves


BEFORE_FILE = "validation_before.json"  # the policy's greedy validation before PPO, for a resumed run's summary


def score_episodes(records, episodes, pool: CandidatePool, normalizer: CostNormalizer, reward_cfg, num_rows: int,
                   alpha: float):
    """Scalar rewards [num_rows] (dummy rows 0) and the episode metrics the logger and progress bar show;
    `alpha` is this iteration's cost coefficient (`scheduled_alpha`), the rest of the reward is `reward_cfg`'s."""
    scores = np.zeros((num_rows,), np.float32)
    em, fmt, cost, routes = [], [], [], []
    calls = collections.Counter()
    for i, (record, ep) in enumerate(zip(records, episodes)):
        score = score_policy_episode(record, ep, pool, normalizer(ep.cost), alpha,
                                     metric=reward_cfg.metric, form=reward_cfg.form)
        scores[i] = score.reward
        em.append(score.em)
        fmt.append(score.format)
        cost.append(score.cost)
        routes.append(score.calls)
        calls.update(score.calls_by_candidate)
    n = len(records)
    return scores, {"episode/reward": float(scores[:n].mean()), "episode/em": float(np.mean(em)),
                    "episode/format_ok": float(np.mean(fmt)), "episode/cost": float(np.mean(cost)),
                    "episode/routes": float(np.mean(routes)), "reward/alpha": float(alpha),
                    # share of episodes longer than rollout.max_response_tokens (their tail untrained and unread)
                    "episode/response_cut": float(np.mean([ep.response_cut for ep in episodes[:n]])),
                    # calls per episode to each candidate (every name, so all processes log the same keys)
                    **{CALLS_PREFIX + name: calls[name] / n for name in pool.names}}


def summarize_validation(result: Optional[MethodResult]) -> dict:
    if result is None:  # multi-host: validation ran on process 0
        return {}
    return {f"val/{k}": result.overall(k) for k in ("em", "reward", "cost", "calls", "format")
            if result.overall(k) is not None}



async def _train(run: Run) -> dict:
    c, trainer = run.config, run.trainer
    ckpt = run.checkpointer
    hosts = run.hosts
    batches = QABatchIterator(run.data.train, hosts.local_batch_size(c.data.batch_size, len(run.data.train)),
                              seed=c.seed, drop_remainder=True)  # every iteration a full batch (upstream: drop_last)
    normalizer = CostNormalizer(window=c.reward.cost_window, q_low=c.reward.cost_q_low,
                                q_high=c.reward.cost_q_high, transform=c.reward.cost_transform)

    def save(step: int, train_state, force: bool = False) -> None:
        ckpt.save(step, train_state, data_state=batches.state_dict(), cost_normalizer=normalizer.state_dict(),
                  metrics_step=step, config=c.to_dict(), force=force)

    restored = ckpt.restore(trainer.abstract_state())
    if restored is None:
        state, start = trainer.init_state(copy=False), 0
        if run.warm_start is not None:  # kept as step 0: a run stopped before its first save skips the SFT again
            save(0, state, force=True)
    else:
        start, state, extras = restored
        batches.load_state_dict(hosts.data_state(extras["data"]))
        normalizer.load_state_dict(extras["cost_normalizer"])
    logger = MetricsLogger(run.workdir, total_steps=c.train.total_steps, tensorboard=c.metrics.tensorboard,
                           wandb=c.metrics.wandb, wandb_project=c.metrics.wandb_project,
                           progress=c.metrics.progress, config=c.to_dict(), start_step=start)
    guard = PreemptionGuard().install()
    warm = run.warm_start
    summary = {"copy_losses": warm.copy_losses if warm else [], "sft_losses": warm.sft_losses if warm else [],
               "start_step": start}
    # wall seconds by phase (the summary prints them; a resumed run did no warm start)
    seconds = summary["seconds"] = {"copy warm-up": warm.copy_s if warm else 0.0, "SFT": warm.sft_s if warm else 0.0,
                                    "PPO iterations": 0.0}
    async with PoolClient(run.pool, run.pool_config) as client:
        before_path = os.path.join(run.workdir, BEFORE_FILE)
        if start == 0 and c.train.val_every:  # the state's actor: a resumed step 0 holds the warm start
            summary["before"] = await run.validate(client, trainer.actor_state(state), c.seed)
            if summary["before"] is not None:  # process 0
                write_method(summary["before"], before_path)
        elif c.train.val_every and os.path.isfile(before_path):  # resumed: the warm start's, measured before
            summary["before"] = read_method(before_path)
        done, stop = start, False  # PPO iterations completed; a signal asked to stop
        validated = (None, None)  # (iteration, greedy validation result) of the latest validation
        for step in range(start, c.train.total_steps):
            t0 = time.perf_counter()
            with count_compilations() as compiles:  # XLA compilations of this iteration (0 once warm)
                batch = next(batches)
                prompts_used = [r for r, ok in zip(batch.records, batch.valid) if ok]
                records = [r for r in prompts_used for _ in range(run.n_agent)]  # a prompt's group is contiguous
                actor = trainer.actor_state(state)
                run.engine.params = actor if c.rollout.decode_from_train_shards else hosts.decode_params(actor)
                result = await rollout_in_waves(run.engine, client, run.tokenizer,
                                                [run.prompts[r.question] for r in records], run.rollout_config,
                                                seed=c.seed * 1_000_003 + step, num_rows=run.local_episodes,
                                                slot_ids=hosts.slot_ids(run.local_episodes))
                t_rollout, rss_rollout = time.perf_counter() - t0, peak_rss_gb()
                traj = hosts.common_widths(result.trajectories, run.engine.pad_id)
                cost_reward = hosts.cost_rewards(normalizer, [ep.cost for ep in result.episodes], traj.tokens.shape[0])
                alpha = scheduled_alpha(c.reward.alpha, step, c.reward.early_alpha, c.reward.early_steps)
                scores, metrics = score_episodes(records, result.episodes, run.pool, cost_reward, c.reward,
                                                 traj.tokens.shape[0], alpha)
                metrics = hosts.mean_metrics(metrics, len(records))
                group_ids = None
                if run.n_agent > 1:  # per-prompt ids, unique over processes; dummy rows get 0 (masked out)
                    group_ids = np.zeros(traj.tokens.shape[0], np.int32)
                    group_ids[:len(records)] = hosts.group_ids(len(prompts_used))
                state, ppo_metrics = trainer.ppo_iteration(state, traj, scores, group_ids)
            metrics.update(ppo_metrics)
            t_iteration = time.perf_counter() - t0
            seconds["PPO iterations"] += t_iteration
            metrics.update({"perf/tokens": hosts.sum(np.asarray(traj.attention_mask).sum()),
                            "perf/rollout_s": t_rollout, "perf/iteration_s": t_iteration,
                            "perf/call_latency_hidden": result.timing.hidden_fraction,
                            "perf/compiles": compiles.count,
                            # this host's peak RSS so far, after the rollout and after the update (GiB)
                            "perf/peak_rss_rollout_gb": rss_rollout, "perf/peak_rss_gb": peak_rss_gb()})
            done = step + 1
            if c.train.val_every and done % c.train.val_every == 0:
                validated = (done, await run.validate(client, trainer.actor_state(state), c.seed))
                metrics.update(summarize_validation(validated[1]))
            logger.log(done, metrics)
            stop = hosts.any(guard.requested)
            save(done, state, force=stop)
            if stop:
                break
        if c.train.val_every and not stop:  # greedy and seeded: the last iteration's validation is the same
            summary["after"] = (validated[1] if validated[0] == done else
                                await run.validate(client, trainer.actor_state(state), c.seed))
    seconds["validation"] = run.validation_s
    summary["preempted"] = stop  # saved and stopped early: no final validation or export (a rerun resumes)
    ckpt.wait()
    if done > start and ckpt.latest_step() != done:
        save(done, state, force=True)
    ckpt.close()
    logger.close()
    guard.uninstall()
    if c.train.export_hf and not stop:
        actor = nnx.merge(trainer.defs.actor, hosts.local_params(trainer.actor_state(state)))
        summary["export"] = export_hf(actor, os.path.join(run.workdir, "hf_export"), tokenizer=run.tokenizer)
    summary["state"] = state
    return summary


def train(config, workdir: Optional[str] = None) -> dict:
    """Runs (or resumes) training; returns a summary (validation before/after, SFT losses, final state).

    SIGTERM stops at the end of the current iteration after a checkpoint save; the summary then says
    `preempted=True` and has no final validation or export.
    """
    run = Run(config, workdir or config.workdir)
    try:
        return asyncio.run(_train(run))
    finally:
        run.stack.close()
