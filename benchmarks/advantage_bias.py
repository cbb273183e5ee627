"""Why alpha=0.9 drifts to the expensive candidate under GRPO: the group-std division, measured on the real function.

Multi-hop questions under alpha=0.9 and the hierarchical reward (docs/learning.md, stop 38): Mixtral is right ~90% of
the time but, as the most expensive candidate, earns only ~0.1 when right; a cheap candidate is right ~12% of the
time and earns ~0.8; an episode that makes no valid call earns -1. Their expected rewards are about equal. This
script draws groups of episodes with those outcomes, computes `rr1_jax.rl.algos.grpo_advantages` with and without
the division by the group's reward std, and prints each kind of episode's mean advantage next to its mean reward.

With the division the reliable small reward gets several times the cheap candidate's advantage (being the group's
best counts, not by how much); without it the advantages follow the expected rewards.

Usage: `.venv/bin/python benchmarks/advantage_bias.py [--groups 20000] [--group-size 4] [--shares 0.2,0.65,0.15]`
(CPU, a few seconds; the defaults are the stop-37 and stop-38 logs' figures, see `OUTCOMES`).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rr1_jax.rl.algos import grpo_advantages  # noqa: E402

# kind of first call: (probability the answer is right, reward when right, reward otherwise)
OUTCOMES = {"Mixtral (expensive, reliable)": (0.90, 0.12, 0.0),  # 0.1 + 0.9 x cost reward ~0.02
            "a cheap candidate": (0.12, 0.80, 0.0),  # 0.1 + 0.9 x cost reward ~0.78
            "no valid call": (0.0, 0.0, -1.0)}  # the format gate


def draw(shares: np.ndarray, groups: int, group_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kind of each episode [groups * size], its reward [groups * size]), groups contiguous."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(OUTCOMES), size=groups * group_size, p=shares)
    right_p, right_r, wrong_r = (np.asarray(v) for v in zip(*OUTCOMES.values()))
    right = rng.random(kinds.shape) < right_p[kinds]
    return kinds, np.where(right, right_r[kinds], wrong_r[kinds])


def mean_advantages(kinds: np.ndarray, rewards: np.ndarray, group_size: int, norm_by_std: bool) -> list[float]:
    """Each kind's mean GRPO advantage (one value per episode: the advantage is the same on every token)."""
    n = rewards.shape[0]
    group_ids = jnp.asarray(np.arange(n) // group_size, jnp.int32)
    adv, _ = grpo_advantages(jnp.asarray(rewards, jnp.float32), jnp.ones((n, 1), jnp.float32), group_ids,
                             num_groups=n // group_size, norm_by_std=norm_by_std)
    adv = np.asarray(adv[:, 0])
    return [float(adv[kinds == k].mean()) for k in range(len(OUTCOMES))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=20_000)
    parser.add_argument("--group-size", type=int, default=4, help="episodes per question (rollout.n_agent)")
    parser.add_argument("--shares", default="0.2,0.65,0.15",
                        help="how often each kind of episode is drawn, in the order of OUTCOMES")
    args = parser.parse_args()
    try:
        shares = np.asarray([float(s) for s in args.shares.split(",")])
    except ValueError:
        shares = np.asarray([])
    if shares.shape != (len(OUTCOMES),) or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        parser.error(f"--shares {args.shares!r}: give {len(OUTCOMES)} non-negative shares that sum to 1")
    if args.groups < 1 or args.group_size < 2:
        parser.error("--groups must be >= 1 and --group-size >= 2 (a singleton group has no advantage)")
    kinds, rewards = draw(shares, args.groups, args.group_size)
    with_std = mean_advantages(kinds, rewards, args.group_size, norm_by_std=True)
    without = mean_advantages(kinds, rewards, args.group_size, norm_by_std=False)
    print(f"{args.groups} groups of {args.group_size}; shares {args.shares}\n")
    print("| first call | mean reward | mean advantage, (r - mean) / std | mean advantage, r - mean |")
    print("|---|---|---|---|")
    for k, name in enumerate(OUTCOMES):
        print(f"| {name} | {rewards[kinds == k].mean():+.3f} | {with_std[k]:+.3f} | {without[k]:+.3f} |")
    ratio = lambda adv: adv[0] / adv[1]  # noqa: E731
    print(f"\nexpensive / cheap: mean reward {rewards[kinds == 0].mean() / rewards[kinds == 1].mean():.2f}x, "
          f"advantage with the std division {ratio(with_std):.2f}x, without {ratio(without):.2f}x")


if __name__ == "__main__":
    main()
