"""Packed vs padded PPO updates (`ppo.pack_updates`), side by side on the learning benchmark's PPO iterations.

Both runs start from the same exported warm start with the same seeds, so they sample the same episodes while
their weights agree; each prints its wall time per iteration, split into rollout and update (prepare + critic
+ actor), and the packed run its row fill. The first `--skip` iterations (compiles) are left out of the means.

    .venv/bin/python benchmarks/ppo_packing.py --start runs/learning/sft/hf_export [--iterations 12]

`--start` is a warm start exported by `benchmarks/learning.py` or `make demo` (its `hf_export`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import learning  # noqa: E402
from rr1_jax.rl.loop import train  # noqa: E402

AGREEMENT_KEYS = ("episode/em", "actor/pg_loss", "actor/kl_loss", "actor/entropy")


def run(workdir: str, start: str, iterations: int, pack: bool) -> list[dict]:
    shutil.rmtree(workdir, ignore_errors=True)
    config = learning._config(workdir, iterations, 8, "demo", learning.PPO.items(),
                              [("model.path", start), ("sft.steps", 0), ("ppo.pack_updates", pack),
                               ("train.val_every", 0)])
    train(config)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return sum(values) / max(1, len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", required=True, help="exported warm start (an hf_export directory)")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--skip", type=int, default=3, help="leading iterations left out of the means")
    parser.add_argument("--workdir", default="runs/ppo_packing")
    args = parser.parse_args()
    runs = {pack: run(os.path.join(args.workdir, "packed" if pack else "padded"), args.start, args.iterations, pack)
            for pack in (False, True)}
    print(f"\n{'':8s} {'iteration s':>12s} {'rollout s':>10s} {'forwards+updates s':>19s} {'row fill':>9s} "
          f"(means over iterations {args.skip + 1}-{args.iterations})")
    times = {}
    for pack, rows in runs.items():
        steady = rows[args.skip:]
        iteration, rollout = mean(steady, "perf/iteration_s"), mean(steady, "perf/rollout_s")
        times[pack] = (iteration, iteration - rollout, sum(r["perf/iteration_s"] for r in rows[:args.skip]))
        fill = f"{mean(steady, 'perf/packed_fill'):9.2f}" if pack else ""
        name = "packed" if pack else "padded"
        print(f"{name:8s} {iteration:12.2f} {rollout:10.2f} {iteration - rollout:19.2f} {fill}")
    (it_pad, up_pad, first_pad), (it_pack, up_pack, first_pack) = times[False], times[True]
    print(f"speed-up: iteration {it_pad / it_pack:.2f}x, forwards+updates {up_pad / up_pack:.2f}x; the first "
          f"{args.skip} iterations (with compiles) took {first_pad:.1f} s padded, {first_pack:.1f} s packed")
    print("\nagreement per iteration (padded / packed; '-': no actor update, e.g. the critic warm-up iteration):")
    show = lambda row, key: f"{row[key]:.5f}" if key in row else "-"  # noqa: E731
    for i, (a, b) in enumerate(zip(runs[False], runs[True]), start=1):
        print(f"  {i:3d} " + "  ".join(f"{k.split('/')[1]} {show(a, k)}/{show(b, k)}" for k in AGREEMENT_KEYS))


if __name__ == "__main__":
    main()
