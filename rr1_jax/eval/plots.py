"""The cost/quality Pareto plot (as the paper's cost figure): EM against raw cost per question.

Each point is one report row (overall EM and cost, means over seeds); policies under evaluation (e.g. one per
α of a sweep) are drawn as circles, baselines as squares, and the Pareto front (no other point is both cheaper
and at least as accurate) as a dashed line. The x axis is symmetric-log so cost-0 methods (Direct, CoT, a policy
that never routes) stay visible next to routers. Headless (matplotlib Agg).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

from rr1_jax.eval.report import MethodResult


@dataclasses.dataclass(frozen=True)
class ParetoPoint:
    label: str
    cost: float  # mean raw cost per question (upstream unit: completion tokens × $/1M)
    em: float
    kind: str = "baseline"  # "policy" or "baseline"


def points_from_methods(methods: Iterable[MethodResult]) -> list[ParetoPoint]:
    """One point per report row (label: name and decoding)."""
    return [ParetoPoint(f"{m.name} [{m.decoding}]", m.overall("cost"), m.overall("em"), m.kind) for m in methods]


def pareto_front(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The non-dominated points, by increasing cost: each is strictly more accurate than every cheaper one."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p.cost, -p.em)):
        if p.em > best:
            front.append(p)
            best = p.em
    return front


def pareto_plot(points: Sequence[ParetoPoint], path: str, title: str = "EM vs cost") -> str:
    """Writes the plot as a PNG at `path` (directories created); returns `path`."""
    if not points:
        raise ValueError("pareto_plot needs at least one point")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        for kind, marker, color in (("policy", "o", "tab:blue"), ("baseline", "s", "tab:gray")):
            chosen = [p for p in points if p.kind == kind]
            if chosen:
                ax.scatter([p.cost for p in chosen], [p.em for p in chosen], marker=marker, color=color, s=40,
                           label="policies" if kind == "policy" else "baselines", zorder=3)
        for p in points:
            ax.annotate(p.label, (p.cost, p.em), textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = pareto_front(points)
        ax.plot([p.cost for p in front], [p.em for p in front], "--", color="tab:red", label="Pareto front",
                zorder=2)
        positive = [p.cost for p in points if p.cost > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        ax.set_xlabel("raw cost per question (completion tokens × $/1M)")
        ax.set_ylabel("exact match")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
