"""Peak memory of whole PPO iterations: the rollout against the simulated pool, then the update (issue #7).

Runs `--iterations` PPO iterations of a config through the training loop itself (`rl/loop.train`) with no SFT,
validation or export, `--batch` questions of one episode each, and prints per iteration: tokens and calls per
episode, rollout and update seconds, compilations, and this process's peak RSS after the rollout and after the
update (the loop's `perf/peak_rss_rollout_gb` / `perf/peak_rss_gb`). Peak RSS includes loading the weights and
XLA's compilations; the second iteration compiles nothing, so a peak that does not grow there is the steady state.

    .venv/bin/python benchmarks/iteration_memory.py                   # SmolLM2-135M-Instruct, batch 8, 2 iterations
    .venv/bin/python benchmarks/iteration_memory.py --config demo --batch 16
    .venv/bin/python benchmarks/iteration_memory.py --set rollout.response_buckets='(1024,)'

On 2 CPU cores one SmolLM2 update of 8 rows takes minutes (README "PPO update"). `--start DIR` starts from an
exported warm start (an `hf_export` directory) instead of the config's weights.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import demo, smollm2, tiny  # noqa: E402
from rr1_jax.config_overrides import apply_overrides, parse_override  # noqa: E402
from rr1_jax.metrics import peak_rss_gb  # noqa: E402
from rr1_jax.rl.loop import train  # noqa: E402

CONFIGS = {"smollm2": smollm2.get_config, "demo": demo.get_config, "tiny": tiny.get_config}


def iteration_config(name: str, batch: int, iterations: int, workdir: str, start: str = "", overrides=()):
    """`configs/<name>.py` for a memory measurement: `batch` questions of one episode, no SFT, no validation."""
    c = CONFIGS[name]()
    c.workdir = workdir
    c.data.batch_size = batch
    c.rollout.n_agent = 1
    c.ppo.mini_batch_size = min(c.ppo.mini_batch_size, batch)
    c.ppo.micro_batch_size = min(c.ppo.micro_batch_size, c.ppo.mini_batch_size)
    c.ppo.critic_warmup = 0  # the update runs in every iteration measured
    c.sft.steps = c.sft.copy_steps = 0
    c.train.update(dict(total_steps=iterations, val_every=0, export_hf=False))
    c.metrics.update(dict(progress=False, tensorboard=False))
    if start:
        c.model.path = start
    apply_overrides(c, overrides, where=f"configs/{name}.py")
    return c


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="smollm2")
    parser.add_argument("--batch", type=int, default=8, help="questions (= episodes) per iteration")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--start", default="", help="an exported warm start (HF directory) to begin from")
    parser.add_argument("--workdir", default="", help="kept if given; a temporary directory otherwise")
    parser.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                        help="a config override, e.g. rollout.response_buckets='(1024,)'")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="iteration_memory_")
    before = peak_rss_gb()
    config = iteration_config(args.config, args.batch, args.iterations, workdir, args.start, args.set)
    t0 = time.perf_counter()
    try:
        train(config)
        rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nconfigs/{args.config}.py ({config.model.family}), {args.batch} episodes per iteration, "
          f"response buckets {tuple(config.rollout.response_buckets)}; peak RSS after imports {before:.2f} GB")
    print(f"{'iteration':>9}{'tokens/ep':>10}{'calls/ep':>9}{'rollout s':>10}{'update s':>9}{'compiles':>9}"
          f"{'peak RSS after rollout':>24}{'after update':>14}")
    for row in rows:
        update_s = row["perf/iteration_s"] - row["perf/rollout_s"]
        print(f"{row['step']:>9}{row['perf/tokens'] / args.batch:>10.0f}{row['episode/routes']:>9.2f}"
              f"{row['perf/rollout_s']:>10.1f}{update_s:>9.1f}{row['perf/compiles']:>9.0f}"
              f"{row['perf/peak_rss_rollout_gb']:>21.2f} GB{row['perf/peak_rss_gb']:>11.2f} GB")
    print(f"\npeak RSS {peak_rss_gb():.2f} GB; wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
