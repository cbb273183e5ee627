"""Learning benchmark (issue #7): does PPO teach the tiny demo policy to route on the synthetic task?

One run, three policies evaluated greedily on the same held-out questions (test split, disjoint entities):
  1. the SFT start: `configs/demo.py`'s copy warm-up and SFT on uniform-route demonstrations (format and
     copying, no routing choice), the same warm start as `make demo`'s, exported once and shared by both PPO
     runs;
  2. PPO with alpha=0 (reward = format-gated exact match) from that start, as GRPO (`PPO`: groups of 4 episodes
     per question, 4 passes over each batch, a KL loss of 0.5 to the start);
  3. PPO with alpha=0.9 (exact match traded for low cost) from the same start, same settings;
next to the oracle router and every single candidate (one call with the question), which need no policy.
Prints the table and the four targets (EM gain >= 0.25, >= 90% of the oracle, >= best single + 0.10, and a cost
cut >= 50% at an EM loss <= 0.15 with alpha=0.9), then peak RSS.

Usage: `.venv/bin/python benchmarks/learning.py [--steps 60] [--eval 100] [--workdir runs/learning]
[--start runs/learning/sft/hf_export] [--ppo-seed 0]` (`--start`: reuse an earlier run's exported warm start,
skipping the SFT; `--ppo-seed`: another draw of the PPO runs from the same start).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import demo  # noqa: E402
from rr1_jax.data.synthetic_candidates import default_candidates  # noqa: E402
from rr1_jax.data.synthetic_routing import routing_reference  # noqa: E402
from rr1_jax.eval.scoring import CALLS_PREFIX, OVERALL  # noqa: E402
from rr1_jax.rl.loop import load_run_data, train  # noqa: E402


# PPO from the warm start. GRPO's per-question groups, several passes per batch and a strong KL loss to the
# uniform-route start let routing become per-domain; GAE or a weak KL (0.05) moves every domain to the candidate
# that is best on average (README "Status").
PPO = {"ppo.adv_estimator": "grpo", "rollout.n_agent": 4, "data.batch_size": 16, "ppo.mini_batch_size": 32,
       "ppo.ppo_epochs": 4, "ppo.use_kl_loss": True, "ppo.kl_loss_coef": 0.5, "optim.actor.lr": 1e-4}
PPO_ITERATIONS = 60


def _config(workdir: str, steps: int, eval_size: int, **overrides):
    c = demo.get_config()
    c.workdir = workdir
    c.data.val_size = eval_size
    c.data.synthetic.num_test = max(c.data.synthetic.num_test, eval_size)
    c.train.total_steps = steps
    c.train.val_every = 0 if steps == 0 else steps  # validate at the end only (and before, in `train`)
    c.metrics.progress = False
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return c


def _routes(result) -> str:
    """Most-called candidate per domain, e.g. `capital: Qwen2.5-7B 0.95`."""
    out = []
    for group, row in sorted(result.per_seed[0].items()):
        if group == OVERALL:
            continue
        calls = sorted(((k[len(CALLS_PREFIX):], v) for k, v in row.items() if k.startswith(CALLS_PREFIX) and v),
                       key=lambda kv: -kv[1])
        top = f"{calls[0][0].replace('-Instruct', '')} {calls[0][1]:.2f}" if calls else "none"
        out.append(f"{group.removeprefix('synthetic_')}: {top}")
    return "; ".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=PPO_ITERATIONS, help="PPO iterations")
    parser.add_argument("--eval", type=int, default=100, help="held-out questions evaluated")
    parser.add_argument("--alpha", type=float, default=0.9, help="cost weight of the cost-aware run")
    parser.add_argument("--workdir", default="runs/learning")
    parser.add_argument("--start", default="", help="an exported warm start (an earlier run's sft/hf_export)")
    parser.add_argument("--ppo-seed", type=int, default=0,
                        help="seed of the PPO runs only (question order, episode sampling); the warm start keeps 0")
    args = parser.parse_args()
    if args.start and not os.path.isfile(os.path.join(args.start, "config.json")):
        parser.error(f"--start {args.start!r} is not an exported policy (no config.json): pass the hf_export "
                     "directory an earlier run of this benchmark wrote under <workdir>/sft/")
    if args.start and os.path.abspath(args.start).startswith(os.path.abspath(args.workdir) + os.sep):
        parser.error(f"--start {args.start!r} lies inside --workdir {args.workdir!r}, which this run clears first: "
                     "pass another --workdir")
    shutil.rmtree(args.workdir, ignore_errors=True)
    t0 = time.perf_counter()

    sft_dir = os.path.join(args.workdir, "sft")
    start_path = args.start or train(_config(sft_dir, 0, args.eval, **{"train.val_every": 0}))["export"]
    t_sft = time.perf_counter() - t0
    runs = {}
    for alpha in (0.0, args.alpha):
        t = time.perf_counter()
        c = _config(os.path.join(args.workdir, f"ppo_alpha{alpha:g}"), args.steps, args.eval,
                    **{**PPO, "model.path": start_path, "sft.steps": 0, "reward.alpha": alpha,
                       "seed": args.ppo_seed})
        runs[alpha] = train(c), time.perf_counter() - t
        if runs[alpha][0]["preempted"]:  # SIGTERM: do not go on to the next run
            sys.exit(f"stopped by a signal during the alpha={alpha:g} run (checkpoint in {c.workdir})")

    c = _config(sft_dir, 0, args.eval)
    data = load_run_data(c)  # the same held-out questions the runs validated on
    ref = routing_reference(data.val, default_candidates(), data.task.table, seed=c.pool.simulated_seed)
    best = ref.best_single
    sft_result = runs[0.0][0]["before"]
    ppo0, ppo9 = runs[0.0][0]["after"], runs[args.alpha][0]["after"]

    def em(r):
        return r.overall("em")

    def cost(r):
        return r.overall("cost")

    sft_time = f"warm start reused from {args.start}" if args.start else f"SFT {t_sft:.0f} s"
    print(f"\nsynthetic task, {args.eval} held-out questions, greedy decoding; PPO {args.steps} iterations, "
          f"seed {args.ppo_seed} "
          f"({sft_time}, PPO alpha=0 {runs[0.0][1]:.0f} s, alpha={args.alpha:g} {runs[args.alpha][1]:.0f} s)\n")
    print("| router | EM | cost / question | calls / question | most-called candidate per domain |")
    print("|---|---|---|---|---|")
    for name, r in (("SFT start (uniform routes)", sft_result), ("PPO alpha=0", ppo0),
                    (f"PPO alpha={args.alpha:g}", ppo9)):
        print(f"| {name} | {em(r):.3f} | {cost(r):.1f} | {r.overall('calls'):.2f} | {_routes(r)} |")
    print(f"| oracle (hindsight, one call) | {ref.oracle.em:.3f} | {ref.oracle.cost:.1f} | 1.00 | |")
    print(f"| best single: {best.name} | {best.em:.3f} | {best.cost:.1f} | 1.00 | |")

    # EM is a multiple of 1/eval: round the differences so float error (0.58 - 0.33 = 0.2499...) decides nothing.
    gain = round(em(ppo0) - em(sft_result), 9)
    cut = 1.0 - cost(ppo9) / max(cost(ppo0), 1e-9)
    loss = round(em(ppo0) - em(ppo9), 9)
    targets = [
        (f"PPO raises EM by >= 0.25 over the SFT start: +{gain:.3f}", gain >= 0.25),
        (f"PPO reaches >= 90% of the oracle's EM: {em(ppo0) / ref.oracle.em:.1%}", em(ppo0) >= 0.9 * ref.oracle.em),
        (f"PPO beats the best single candidate by >= 0.10: {em(ppo0) - best.em:+.3f}", em(ppo0) >= best.em + 0.10),
        (f"alpha={args.alpha:g} cuts cost >= 50% ({cut:.1%}) at an EM loss <= 0.15 ({loss:+.3f})",
         cut >= 0.5 and loss <= 0.15),
    ]
    print()
    for text, ok in targets:
        print(f"[{'met' if ok else 'MISSED'}] {text}")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB; "
          f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
