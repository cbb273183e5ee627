"""Route frontier: the EM a router can reach on `benchmarks/learning.py`'s held-out questions, and at what cost.

A router that cannot tell a right reply from a wrong one (the simulated candidates answer confidently, and the same
way when asked again) can only do as well as its plan per domain: one candidate called with the question, or, for
multi-hop questions, a two-hop plan (one candidate names the company's country, another that country's capital), as
the decomposed demonstrations do. This enumerates every per-domain choice of plan, assuming that the policy copies
every reply perfectly, and prints their EM/cost frontier. Per-domain mixtures, i.e. stochastic routers, fill in the
frontier's lower convex hull. It then checks what issue #7's learning targets ask of PPO together: an alpha=0
router at >= 90% of the hindsight oracle, and an alpha=0.9 router that halves its cost at an EM loss <= 0.15, with
one-call routers only and with the two-hop plans too. No policy is involved.

Usage: `.venv/bin/python benchmarks/route_frontier.py [--eval 100]`
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.learning import _config  # noqa: E402
from rr1_jax.data.synthetic_candidates import default_candidates  # noqa: E402
from rr1_jax.data.synthetic_routing import routing_reference, two_hop_score  # noqa: E402
from rr1_jax.rl.run_setup import load_run_data  # noqa: E402


def per_domain_routers(options: dict[str, list], weights: dict[str, float]) -> list[tuple[float, float, tuple]]:
    """(EM, cost, plan per domain) of every router that follows one plan per domain; `options[d]` lists the
    plans for domain d as RouterScores."""
    domains = sorted(weights)
    routers = []
    for choice in itertools.product(*(options[d] for d in domains)):
        em = sum(weights[d] * c.em_by_source[d] for d, c in zip(domains, choice))
        cost = sum(weights[d] * c.cost_by_source[d] for d, c in zip(domains, choice))
        routers.append((em, cost, tuple(c.name for c in choice)))
    return routers


def pareto(routers):
    """The routers no other router beats on both EM and cost, best EM first."""
    frontier, cheapest = [], float("inf")
    for em, cost, names in sorted(routers, key=lambda r: (-r[0], r[1])):
        if cost < cheapest:
            frontier.append((em, cost, names))
            cheapest = cost
    return frontier


def cheapest_at(routers, em_floor: float) -> float:
    """Least mean cost of a router, mixtures included, whose EM is >= `em_floor` (inf if none): the lower convex
    hull of the (EM, cost) points, read at `em_floor` (its corners are Pareto points, so passing only the
    Pareto frontier gives the same answer)."""
    best = min((cost for em, cost, _ in routers if em >= em_floor), default=float("inf"))
    for (e1, c1, _), (e2, c2, _) in itertools.combinations(routers, 2):
        if min(e1, e2) < em_floor <= max(e1, e2):  # mix the two points so EM is exactly em_floor
            t = (em_floor - e1) / (e2 - e1)
            best = min(best, c1 + t * (c2 - c1))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval", type=int, default=100, help="held-out questions (as benchmarks/learning.py)")
    args = parser.parse_args()
    c = _config("/tmp/route_frontier", 0, args.eval)
    data = load_run_data(c)
    profiles = default_candidates()
    reference = routing_reference(data.val, profiles, data.task.table, seed=c.pool.simulated_seed)
    sources = [r.data_source for r in data.val]
    weights = {d: sources.count(d) / len(sources) for d in sorted(set(sources))}
    short = {d: d.removeprefix("synthetic_") for d in weights}

    print(f"{len(sources)} held-out questions; EM / cost per domain of each candidate (one call with the question):")
    print("| candidate | " + " | ".join(short[d] for d in weights) + " | overall |")
    print("|---|" + "---|" * (len(weights) + 1))
    for s in reference.candidates:
        cells = [f"{s.em_by_source[d]:.2f} / {s.cost_by_source[d]:.1f}" for d in weights]
        print(f"| {s.name} | " + " | ".join(cells) + f" | {s.em:.3f} / {s.cost:.1f} |")

    one_call = {d: list(reference.candidates) for d in weights}
    multihop_domain = "synthetic_multihop"
    two_hop = dict(one_call)
    if multihop_domain in weights:
        records = [r for r in data.val if r.data_source == multihop_domain]
        plans = [two_hop_score(records, a, b, data.task.table, seed=c.pool.simulated_seed)
                 for a in profiles for b in profiles]
        two_hop[multihop_domain] = one_call[multihop_domain] + plans
        print(f"\nbest two-hop plans for the {len(records)} multi-hop questions (EM / cost):")
        for plan in sorted(plans, key=lambda p: (-p.em, p.cost))[:4]:
            print(f"  {plan.name}: {plan.em:.2f} / {plan.cost:.1f}")
    for title, options in (("one call per question", one_call), ("two-hop plans for multi-hop too", two_hop)):
        _report(title, per_domain_routers(options, weights), reference, short)


def _plans(names) -> str:
    """A router's plans per domain as table cells, candidate names without "-Instruct"."""
    return " | ".join(name.replace("-Instruct", "") for name in names)


def _report(title, routers, reference, short):
    frontier = pareto(routers)
    print(f"\n## {title}: Pareto frontier of the {len(routers)} per-domain routers (perfect copying)")
    print("| EM | cost | " + " | ".join(short.values()) + " |")
    print("|---|---|" + "---|" * len(short))
    for em, cost, names in frontier:
        print(f"| {em:.3f} | {cost:.1f} | {_plans(names)} |")

    top_em, top_cost, _ = frontier[0]
    oracle_floor = 0.9 * reference.oracle.em
    print(f"\nhindsight oracle {reference.oracle.em:.3f} (cost {reference.oracle.cost:.1f}); 90% of it = "
          f"{oracle_floor:.3f}; best per-domain router {top_em:.3f} (cost {top_cost:.1f}), so the 90% target needs "
          f"its routing and >= {oracle_floor / top_em:.1%} of its replies copied")
    for em0 in (top_em, oracle_floor):  # the alpha=0 router the first targets ask for, at its least cost
        cost0 = cheapest_at(frontier, em0)
        need = cheapest_at(frontier, em0 - 0.15)
        verdict = ("met by routers up to {:.1f} above the frontier's cost".format(0.5 * cost0 - need)
                   if need <= 0.5 * cost0 else "missed unless the alpha=0 router spends more than it needs")
        print(f"alpha=0 router at EM {em0:.3f} costs >= {cost0:.1f}; an alpha=0.9 router at EM >= {em0 - 0.15:.3f} "
              f"costs >= {need:.1f} ({1 - need / cost0:.1%} less; the target is >= 50%): {verdict}")
        deterministic = min((r for r in frontier if r[0] >= em0 - 0.15), key=lambda r: r[1])
        print(f"  cheapest deterministic router at EM >= {em0 - 0.15:.3f}: EM {deterministic[0]:.3f}, cost "
              f"{deterministic[1]:.1f} ({_plans(deterministic[2])})")
    print("(the frontier between its corners is reached by sending part of a domain to each of two plans)")


if __name__ == "__main__":
    main()
