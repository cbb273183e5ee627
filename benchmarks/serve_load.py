"""Load test of the OpenAI-compatible router server (loopback only, bounded): 64 concurrent requests.

Starts `rr1_jax.serve` on 127.0.0.1 with the toy router (rr1_jax/serve/toy_policy.py: the real jitted engine
with weights that think for `--think` tokens, route once to the simulated pool, then answer; or `--policy tiny`,
random weights that never route and generate to the token limit) and the simulated candidate pool (per-call
latency `--latency-ms` ± `--latency-std-ms`). Then, with the official `openai.AsyncOpenAI` client:

  1. concurrent: all `--requests` at once (continuous batching over `--slots` slots; the rest queue),
  2. waves: `--slots` requests at a time, each wave waiting for its slowest request (static batching),
  3. sequential: one request at a time,

and prints per-request latency p50 / p95, requests/s and the speed-ups. Every request must succeed (the script
exits non-zero otherwise); the answers, the routed calls and the pool's ledger are checked as well.

    .venv/bin/python benchmarks/serve_load.py [--requests 64] [--slots 16] [--latency-ms 200] [--policy toy]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import openai  # noqa: E402

from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task  # noqa: E402
from rr1_jax.rollout.pool import PoolConfig  # noqa: E402
from rr1_jax.rollout.simulated_pool import (SimulatedPoolConfig, SimulatedPoolServer,  # noqa: E402
                                            simulated_candidate_pool)
from rr1_jax.serve.server import build_app, serve_in_thread  # noqa: E402
from rr1_jax.serve.service import ServeConfig, Service  # noqa: E402

MODEL = "rr1-router"


def build_policy(name: str, task, think: int):
    """(policy, the answer every request must get, or None)."""
    if name == "toy":
        from rr1_jax.serve.toy_policy import toy_router_policy

        country = sorted(task.table.capital_of)[0]
        answer = task.table.capital_of[country]
        return toy_router_policy(route_query=f"What is the capital of {country}?", answer=answer,
                                 think_steps=think), answer
    from rr1_jax.eval.evaluate import random_params
    from rr1_jax.model.config import ModelConfig
    from rr1_jax.serve.toy_policy import toy_router_policy

    toy = toy_router_policy(think_steps=think)  # borrow its byte-level tokenizer
    config = ModelConfig.tiny(vocab_size=len(toy.tokenizer))
    graphdef, params = random_params(config, seed=0, std=0.2)
    toy.graphdef, toy.params, toy.config, toy.label = graphdef, params, config, "tiny"
    return toy, None


async def one(client, question: str, latencies: list, errors: list):
    t0 = time.perf_counter()
    try:
        response = await client.chat.completions.create(model=MODEL, messages=[{"role": "user",
                                                                               "content": question}])
        latencies.append(time.perf_counter() - t0)
        return response
    except Exception as err:  # counted and reported; the run fails
        errors.append(f"{type(err).__name__}: {err}")
        return None


async def run_schedule(url: str, questions: list, group: int) -> dict:
    """Requests in groups of `group` (each group awaited as a whole); returns latencies, wall time, responses."""
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600.0)
    latencies, errors, responses = [], [], []
    t0 = time.perf_counter()
    for start in range(0, len(questions), group):
        responses += await asyncio.gather(*(one(client, q, latencies, errors) for q in questions[start:start + group]))
    wall = time.perf_counter() - t0
    await client.close()
    return {"latencies": np.array(latencies), "wall": wall, "errors": errors, "responses": responses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--policy", choices=("toy", "tiny"), default="toy")
    parser.add_argument("--think", type=int, default=8, help="toy: thinking tokens before each action")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--latency-std-ms", type=float, default=50.0)
    parser.add_argument("--segment-steps", type=int, default=16)
    parser.add_argument("--skip-sequential", action="store_true", help="only concurrent and waves")
    args = parser.parse_args()
    if not 1 <= args.requests <= 1024:
        parser.error("--requests must be in 1..1024 (a bounded loopback test)")
    task = make_synthetic_task(SyntheticConfig(seed=0))
    policy, answer = build_policy(args.policy, task, args.think)
    questions = [r.question for r in (task.test * (args.requests // len(task.test) + 1))[:args.requests]]
    pool_config = SimulatedPoolConfig(latency_mean_s=args.latency_ms / 1e3, latency_std_s=args.latency_std_ms / 1e3)
    serve = ServeConfig(num_slots=args.slots, segment_steps=args.segment_steps, max_turn_tokens=32,
                        max_routed_calls=2, max_obs_length=256, max_prompt_tokens=512, widths=(128, 512),
                        max_queue=max(256, args.requests))
    pool_server = SimulatedPoolServer(task.table, config=pool_config)
    with pool_server as pool_url:
        pool = simulated_candidate_pool(pool_url)
        service = Service(policy, serve, pool, PoolConfig(require_keys=False, max_concurrency=64))
        t0 = time.perf_counter()
        with serve_in_thread(build_app(service)) as url:
            print(f"server up in {time.perf_counter() - t0:.1f}s (compile included): {args.policy} policy, "
                  f"{args.slots} slots, pool latency {args.latency_ms:g}±{args.latency_std_ms:g} ms", flush=True)
            warm = asyncio.run(run_schedule(url, questions[:2], 2))  # one warm request pair
            schedules = {"concurrent": args.requests, "waves": args.slots}
            if not args.skip_sequential:
                schedules["sequential"] = 1
            results = {}
            for name, group in schedules.items():
                busy = service.batcher.device_s
                results[name] = asyncio.run(run_schedule(url, questions, group))
                results[name]["device_s"] = service.batcher.device_s - busy
                print(f"  {name}: {results[name]['wall']:.2f}s", flush=True)
            stats = service.batcher.stats()
    problems = check(answer, [warm] + list(results.values()), pool_server.total_cost())
    report(args, results, stats, problems)


def check(answer, runs: list, ledger: float) -> list:
    """Every toy answer right, with one routed call; the traces' costs add up to the pool's ledger."""
    problems = []
    responses = [r for run in runs for r in run["responses"] if r is not None]
    traced = sum(r.router_trace["total_cost"] for r in responses)
    if abs(traced - ledger) > 1e-6 * max(1.0, ledger):
        problems.append(f"router_trace costs {traced} != pool ledger {ledger}")
    if answer is not None:
        wrong = [r.choices[0].message.content for r in responses
                 if r.router_trace["num_calls"] != 1 or r.choices[0].message.content != answer]
        if wrong:
            problems.append(f"{len(wrong)} answers without exactly one call or not {answer!r}: {wrong[:3]}")
    return problems


def report(args, results: dict, stats: dict, problems: list) -> None:
    failed = {k: r["errors"] for k, r in results.items() if r["errors"]}
    print(f"\n{args.requests} requests, {args.policy} policy, {args.slots} slots, candidate latency "
          f"{args.latency_ms:g}±{args.latency_std_ms:g} ms, loopback\n")
    print("| schedule | wall s | requests/s | p50 latency s | p95 latency s | engine busy | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        lat = r["latencies"]
        p50, p95 = (np.percentile(lat, q) if len(lat) else float("nan") for q in (50, 95))
        print(f"| {name} | {r['wall']:.2f} | {args.requests / r['wall']:.1f} | {p50:.3f} | {p95:.3f} | "
              f"{r['device_s'] / r['wall']:.0%} | {len(r['errors'])} |")
    base = results["concurrent"]["wall"]
    for name in results:
        if name != "concurrent":
            print(f"\nconcurrent vs {name}: {results[name]['wall'] / base:.2f}x the throughput")
    calls = [len(r.router_trace["calls"]) for r in results["concurrent"]["responses"] if r is not None]
    print(f"routed calls per request (concurrent run): {sorted(set(calls))}; engine segments so far: "
          f"{stats['segments']}")
    if failed or problems or stats["busy"] or stats["queued"]:
        print(f"FAILED: errors {failed}, checks {problems}, engine stats {stats}")
        sys.exit(1)
    print("all requests succeeded; answers, routed calls and the pool ledger check out")


if __name__ == "__main__":
    main()
