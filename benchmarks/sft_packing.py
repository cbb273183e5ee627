"""Packed vs padded SFT rows on `make demo`'s warm start: the same steps, side by side in one process.

Runs the demo's two supervised phases for `--steps` steps each, once with one padded row per sequence and once
packed (`sft.pack`, rl/packing.py), and prints wall time (compiles included: packing compiles one program per
distinct row count), the share of row positions holding real tokens, the final losses (equal up to float
rounding) and the speed-up.

    .venv/bin/python benchmarks/sft_packing.py [--steps 100]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from configs import demo  # noqa: E402
from rr1_jax.parallel.mesh import mesh_from_config  # noqa: E402
from rr1_jax.rl.run_setup import (build_policy, build_tokenizer, load_run_data, routing_template,  # noqa: E402
                                  warm_start_rows)
from rr1_jax.rl.packing import pack_steps, packed_width, unpadded_sequences  # noqa: E402
from rr1_jax.rl.sft import SFTConfig, batch_indices, sft_train  # noqa: E402
from rr1_jax.rollout.pool_setup import open_pool  # noqa: E402


def _fill(traj, steps) -> tuple[float, float]:
    """Share of row positions holding real tokens: (padded rows, packed rows) over the given steps."""
    sequences = unpadded_sequences(traj)
    real = sum(len(sequences[i].ids) for index in steps for i in index)
    padded = sum(len(index) for index in steps) * traj.tokens.shape[1]
    packed = sum(b.tokens.size for b in pack_steps(sequences, steps, packed_width(traj), pad_id=0))
    return real / padded, real / packed


def demo_warm_start_inputs(steps: int):
    """`make demo`'s config (its SFT step counts set to `steps`), initial policy, and warm-start rows: (config,
    model, copy warm-up rows, demonstration rows, copy rows mixed into the demonstration steps)."""
    c = demo.get_config()
    data = load_run_data(c)
    with contextlib.ExitStack() as stack:
        pool, _ = open_pool(c.pool, data.task, stack)
        template = routing_template(c, pool)
        tokenizer = build_tokenizer(c, data, template, pool.names)
    model = build_policy(c, mesh_from_config(c.mesh), tokenizer)
    c.sft.copy_steps = c.sft.steps = steps
    return (c, model, *warm_start_rows(tokenizer, data, template, c))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="steps of each phase")
    args = parser.parse_args()
    c, model, copy_rows, demo_rows, mix = demo_warm_start_inputs(args.steps)
    s = c.sft
    copy_cfg = SFTConfig(lr=s.copy_lr, steps=args.steps, batch_size=s.copy_batch_size, seed=s.seed)
    demo_cfg = SFTConfig(lr=s.lr, steps=args.steps, batch_size=s.batch_size, warmup_steps=s.warmup_steps,
                         seed=s.seed)
    phases = {
        "copy warm-up": (copy_rows, copy_cfg, {}),
        "demonstrations + copy mix": (demo_rows, demo_cfg, dict(auxiliary=mix, auxiliary_batch_size=s.copy_mix)),
    }
    print(f"make demo's warm start, {args.steps} steps per phase, wall time with compiles\n")
    print("| phase | real tokens / row positions, padded -> packed | padded s | packed s | speed-up | "
          "final loss padded / packed |")
    print("|---|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for name, (rows, cfg, extra) in phases.items():
        seconds, finals = [], []
        for pack in (False, True):
            start = time.perf_counter()
            _, losses = sft_train(model, rows, dataclasses.replace(cfg, pack=pack), **extra)
            seconds.append(time.perf_counter() - start)
            finals.append(losses[-1])
        totals = [t + x for t, x in zip(totals, seconds)]
        steps = batch_indices(np.flatnonzero(np.asarray(rows.row_valid)), cfg)
        before, after = _fill(rows, steps)
        print(f"| {name} | {before:.2f} -> {after:.2f} | {seconds[0]:.1f} | {seconds[1]:.1f} | "
              f"{seconds[0] / seconds[1]:.2f}x | {finals[0]:.4f} / {finals[1]:.4f} |")
    print(f"\nboth phases: padded {totals[0]:.1f} s, packed {totals[1]:.1f} s, {totals[0] / totals[1]:.2f}x")


if __name__ == "__main__":
    main()
