"""The cost/quality Pareto plot (as the paper's cost figure): EM against raw cost per question.

Each point is one report row (overall EM and cost, means over seeds), numbered and listed beside the axes;
policies under evaluation (e.g. one per α of a sweep) are drawn as circles, baselines as squares, and the Pareto
front (no other point is both cheaper and at least as accurate) as a dashed line. The x axis is symmetric-log so
cost-0 methods (Direct, CoT, a policy that never routes) stay visible next to routers. Headless (matplotlib Agg).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

from rr1_jax.eval.report import GREEDY, SAMPLED, MethodResult

_DECODING_TAGS = {GREEDY: " [greedy]", SAMPLED: " [sampled]"}


@dataclasses.dataclass(frozen=True)
class ParetoPoint:
    label: str
    cost: float  # mean raw cost per question (upstream unit: completion tokens × $/1M)
    em: float
    kind: str = "baseline"  # "policy" or "baseline"


def points_from_methods(methods: Iterable[MethodResult]) -> list[ParetoPoint]:
    """One point per report row (label: name and, for policy decoding, greedy / sampled)."""
    return [ParetoPoint(point_label(m.name, m.decoding), m.overall("cost"), m.overall("em"), m.kind)
            for m in methods]


def point_label(name: str, decoding: str) -> str:
    """A row's label on the plot: its name, tagged [greedy] / [sampled] for policy decodings."""
    return name + _DECODING_TAGS.get(decoding, "")


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

    fig = plt.figure(figsize=(12, 6), dpi=110)
    ax = fig.add_axes([0.07, 0.1, 0.5, 0.8])
    try:
        for kind, marker, color, z in (("baseline", "s", "tab:gray", 3), ("policy", "o", "tab:blue", 4)):
            chosen = [p for p in points if p.kind == kind]
            if chosen:
                ax.scatter([p.cost for p in chosen], [p.em for p in chosen], marker=marker, color=color, s=40,
                           label="policies" if kind == "policy" else "baselines", zorder=z)
        at: dict[tuple[float, float], list[int]] = {}  # points drawn at the same spot share one annotation
        for i, p in enumerate(points, 1):
            at.setdefault((round(p.cost, 9), round(p.em, 9)), []).append(i)
        for (cost, em), numbers in at.items():
            ax.annotate(",".join(map(str, numbers)), (cost, em), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)
        front = pareto_front(points)
        ax.plot([p.cost for p in front], [p.em for p in front], "--", color="tab:red", label="Pareto front",
                zorder=2)
        positive = [p.cost for p in points if p.cost > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        ax.set_xlabel("raw cost per question (completion tokens × $/1M)")
        ax.set_ylabel("exact match")
        ax.set_ylim(-0.03, 1.05)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        key = "\n".join(f"{i}. {p.label}  (EM {p.em:.3f}, cost {p.cost:.3g})" for i, p in enumerate(points, 1))
        fig.text(0.6, 0.9, key, fontsize=7, va="top", family="monospace")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
