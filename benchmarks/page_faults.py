"""glibc's default malloc vs `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` on `make demo`'s warm start, side by side.

XLA's CPU runtime allocates each step's large buffers with malloc; glibc serves them with fresh mmaps and returns
them to the kernel when freed, so every step page-faults them in again. The Makefile sets the tunable for
`make demo` and `make test`. This runs the demo's two supervised phases (`--steps` steps each, compiles
included) in a child process per setting (glibc reads the tunables at start-up) and prints wall time, minor page
faults per step, user and system CPU seconds, and the speed-up. The computation is the same, so are the losses.

    .venv/bin/python benchmarks/page_faults.py [--steps 60]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SETTINGS = {"glibc default": None, "glibc.malloc.hugetlb=1": "glibc.malloc.hugetlb=1"}


def _phases(steps: int) -> dict:
    """Child process: both warm-start phases; {phase: (seconds, minor faults, user s, system s, last loss)}."""
    from benchmarks.sft_packing import demo_warm_start_inputs
    from rr1_jax.rl.sft import SFTConfig, sft_train

    c, model, copy_rows, demo_rows, mix = demo_warm_start_inputs(steps)
    s = c.sft
    base = SFTConfig(lr=s.lr, steps=steps, batch_size=s.batch_size, warmup_steps=s.warmup_steps, seed=s.seed)
    runs = {"copy warm-up": lambda: sft_train(model, copy_rows, dataclasses.replace(
                base, lr=s.copy_lr, batch_size=s.copy_batch_size, warmup_steps=0)),
            "SFT": lambda: sft_train(model, demo_rows, base, auxiliary=mix, auxiliary_batch_size=s.copy_mix)}
    out = {}
    for phase, run in runs.items():
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        _, losses = run()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out[phase] = (time.perf_counter() - t0, r1.ru_minflt - r0.ru_minflt, r1.ru_utime - r0.ru_utime,
                      r1.ru_stime - r0.ru_stime, losses[-1])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="steps of each phase")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_phases(args.steps)))
        return
    results = {}
    for name, tunables in SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        if tunables:
            env["GLIBC_TUNABLES"] = tunables
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", f"--steps={args.steps}"],
                              env=env, check=True, capture_output=True, text=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"make demo's warm start, {args.steps} steps per phase (compiles included), one process per setting\n")
    print("| phase | malloc | wall s | faults / step | user s | system s | last loss |")
    print("|---|---|---|---|---|---|---|")
    for phase in results["glibc default"]:
        for name, by_phase in results.items():
            wall, faults, user, system, loss = by_phase[phase]
            print(f"| {phase} | {name} | {wall:.1f} | {faults / args.steps:.0f} | {user:.1f} | {system:.1f} | "
                  f"{loss:.4f} |")
        default, tuned = results["glibc default"][phase][0], results["glibc.malloc.hugetlb=1"][phase][0]
        print(f"| {phase} | speed-up | {default / tuned:.2f}x | | | | |")


if __name__ == "__main__":
    main()
