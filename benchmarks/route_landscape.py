"""Route landscape: what each first call actually earns a synthetic-task policy, per question domain.

Samples episodes from an exported policy (T and top-p of `configs/demo.py`) against the simulated pool, on training
questions, and prints per domain and first-called candidate: how often the policy calls it first and the EM those
episodes reach. This is the reward landscape PPO climbs: where a domain's specialist earns far more than the
most-called candidate, the policy is stuck on a preference shared by all domains (issue #7's "best-on-average
trap"), not short of signal.

Usage: `.venv/bin/python benchmarks/route_landscape.py runs/learning/sft/hf_export [--batches 6]`
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from configs import demo  # noqa: E402
from rr1_jax.rl.run_setup import Run  # noqa: E402
from rr1_jax.rl.rewards import exact_match, extract_answer  # noqa: E402
from rr1_jax.rollout.pool import PoolClient  # noqa: E402
from rr1_jax.rollout.worker import rollout  # noqa: E402

NO_CALL = "(no call)"


async def _sample(run: Run, batches: int) -> dict[tuple[str, str], list[float]]:
    """{(domain, first candidate): [EM of each episode]} over `batches` rollouts of distinct training questions."""
    em = collections.defaultdict(list)
    size = run.engine.num_slots
    async with PoolClient(run.pool, run.pool_config) as client:
        for b in range(batches):
            records = run.data.train[b * size:(b + 1) * size]
            result = await rollout(run.engine, client, run.tokenizer, [run.prompts[r.id] for r in records],
                                   run.rollout_config, seed=b)
            for record, episode in zip(records, result.episodes):
                first = episode.routes[0].candidate if episode.routes else NO_CALL
                em[record.metadata["domain"], first].append(
                    exact_match(extract_answer(episode.response_text), record.golden_answers))
    return em


def landscape(path: str, batches: int, batch_size: int, workdir: str) -> tuple[list[str], dict]:
    c = demo.get_config()
    c.model.path, c.sft.steps, c.data.batch_size = path, 0, batch_size
    c.metrics.progress = False
    run = Run(c, workdir)
    try:
        return list(run.pool.names) + [NO_CALL], asyncio.run(_sample(run, batches))
    finally:
        run.stack.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="exported policies (hf_export directories of synthetic runs)")
    parser.add_argument("--batches", type=int, default=6, help="rollouts per policy")
    parser.add_argument("--batch-size", type=int, default=64, help="questions per rollout")
    parser.add_argument("--workdir", default="runs/route_landscape")
    args = parser.parse_args()
    for path in args.paths:
        names, em = landscape(path, args.batches, args.batch_size, args.workdir)
        print(f"\n{path}: share of first calls / EM of those episodes\n\n| domain | "
              + " | ".join(n.removesuffix("-Instruct") for n in names) + " |\n|---|" + "---|" * len(names))
        for domain in sorted({d for d, _ in em}):
            total = sum(len(em[domain, n]) for n in names)
            cells = [f"{len(em[domain, n]) / total:.2f} / {np.mean(em[domain, n]):.2f}" if em[domain, n] else "-"
                     for n in names]
            print(f"| {domain} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
