"""Evaluation results as rows (one per method and decoding), written as `report.json` and `report.md`.

A `MethodResult` holds the per-seed aggregates (rr1_jax/eval/scoring.py) and the per-question scores of one
method; its summary is the mean ± std over seeds. The JSON keeps everything (summary, per-seed aggregates,
per-question scores, run metadata); the Markdown shows the overall table, EM per `data_source`, and routed calls
per candidate.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping, Optional, Sequence

from rr1_jax.eval.scoring import CALLS_PREFIX, OVERALL, EpisodeScore, aggregate, summarize_seeds

GREEDY = "greedy"
SAMPLED = "sampled T=1 top-p 0.95"
CANDIDATES_DECODE = "candidates"  # no policy decoding: the routed candidates answer at their own temperature
_OVERALL_COLUMNS = (("em", "EM"), ("f1", "F1"), ("format", "format"), ("reward", "reward"),
                    ("calls", "calls/q"), ("route_cnt", "route_cnt"), ("cost", "cost/q"), ("dollars", "$/q"))


@dataclasses.dataclass
class MethodResult:
    """One report row: a method under one decoding, evaluated with one or more seeds."""

    name: str
    kind: str  # "policy" (a policy under evaluation), "baseline"
    decoding: str  # GREEDY, SAMPLED or CANDIDATES_DECODE
    seeds: list[int]
    per_seed: list[dict]  # aggregate() of each seed
    episodes: list[list[EpisodeScore]]  # per seed, per question
    note: str = ""

    @classmethod
    def from_scores(cls, name: str, kind: str, decoding: str, seeds: Sequence[int],
                    scores_per_seed: Sequence[Sequence[EpisodeScore]], note: str = "") -> "MethodResult":
        if len(seeds) != len(scores_per_seed):
            raise ValueError(f"{name}: {len(seeds)} seeds but {len(scores_per_seed)} score lists")
        return cls(name, kind, decoding, list(seeds), [aggregate(s) for s in scores_per_seed],
                   [list(s) for s in scores_per_seed], note)

    def renamed(self, name: str, kind: str, note: str = "") -> "MethodResult":
        return dataclasses.replace(self, name=name, kind=kind, note=note or self.note)

    @property
    def summary(self) -> dict:
        return summarize_seeds(self.per_seed)

    def overall(self, metric: str) -> Optional[float]:
        """Mean over seeds of an overall metric (None when the method has no such metric)."""
        value = self.summary[OVERALL].get(metric)
        return None if value is None else value["mean"]

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "decoding": self.decoding, "seeds": self.seeds,
                "note": self.note, "summary": self.summary, "per_seed": self.per_seed,
                "episodes": [[dataclasses.asdict(e) for e in run] for run in self.episodes]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "MethodResult":
        """The inverse of `to_dict` (its derived "summary" is recomputed)."""
        return cls(d["name"], d["kind"], d["decoding"], list(d["seeds"]), list(d["per_seed"]),
                   [[EpisodeScore(**e) for e in run] for run in d["episodes"]], d.get("note", ""))


@dataclasses.dataclass
class EvalReport:
    methods: list[MethodResult]
    meta: dict[str, Any]

    def method(self, name: str, decoding: Optional[str] = None) -> MethodResult:
        for m in self.methods:
            if m.name == name and (decoding is None or m.decoding == decoding):
                return m
        raise KeyError(f"no method {name!r} ({decoding or 'any decoding'}) in the report; rows: "
                       f"{[(m.name, m.decoding) for m in self.methods]}")

    def to_dict(self) -> dict:
        return {"meta": self.meta, "methods": [m.to_dict() for m in self.methods]}

    def write(self, out_dir: str) -> tuple[str, str]:
        """Writes `report.json` and `report.md` into `out_dir` (created); returns their paths."""
        os.makedirs(out_dir, exist_ok=True)
        json_path, md_path = os.path.join(out_dir, "report.json"), os.path.join(out_dir, "report.md")
        with open(json_path, "w") as f:
            json.dump(self.to_dict(), f, indent=1, default=_json_default)
        with open(md_path, "w") as f:
            f.write(self.to_markdown())
        return json_path, md_path

    def to_markdown(self) -> str:
        lines = [f"# Evaluation: {self.meta.get('dataset', '?')}", ""]
        for key in ("policy", "pool", "questions", "max_turns", "max_turn_tokens", "alpha"):
            if key in self.meta:
                lines.append(f"- {key}: {self.meta[key]}")
        lines += ["- EM/F1 use the last `<answer>` regardless of format (upstream validation); cost = Σ completion "
                  "tokens × $/1M of routed calls (upstream unit), `$/q` = true dollars per question; values are "
                  "mean ± std over seeds.", "", "## Overall", ""]
        lines += _table(["method", "decoding", "seeds", "n"] + [label for _, label in _OVERALL_COLUMNS],
                        [[m.name, m.decoding, str(len(m.seeds)), str(int(m.summary[OVERALL]["n"]["mean"]))]
                         + [_fmt(m.summary[OVERALL].get(key)) for key, _ in _OVERALL_COLUMNS] for m in self.methods])
        sources = sorted({g for m in self.methods for g in m.summary if g != OVERALL})
        if sources:
            lines += ["", "## EM per data_source", ""]
            lines += _table(["method", "decoding"] + sources,
                            [[m.name, m.decoding] + [_fmt((m.summary.get(s) or {}).get("em")) for s in sources]
                             for m in self.methods])
        candidates = sorted({k[len(CALLS_PREFIX):] for m in self.methods for k in m.summary[OVERALL]
                             if k.startswith(CALLS_PREFIX)})
        if candidates:
            lines += ["", "## Routed calls per question, by candidate", ""]
            lines += _table(["method", "decoding"] + candidates,
                            [[m.name, m.decoding] + [_fmt(m.summary[OVERALL].get(CALLS_PREFIX + c, _ZERO))
                                                     for c in candidates] for m in self.methods])
        notes = [f"- {m.name}: {m.note}" for m in self.methods if m.note]
        if notes:
            lines += ["", "## Notes", ""] + list(dict.fromkeys(notes))
        return "\n".join(lines) + "\n"


_ZERO = {"mean": 0.0, "std": 0.0}


def _fmt(value: Optional[Mapping[str, float]]) -> str:
    if value is None:
        return "—"
    mean, std = value["mean"], value["std"]
    text = _number(mean)
    return text if std == 0 else f"{text} ± {_number(std)}"


def _number(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.3f}" if abs(x) >= 1e-3 else f"{x:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return out


def write_method(result: MethodResult, path: str) -> str:
    """One method's result as JSON (`read_method` reads it back)."""
    with open(path, "w") as f:
        json.dump(result.to_dict(), f, default=_json_default)
    return path


def read_method(path: str) -> MethodResult:
    with open(path) as f:
        return MethodResult.from_dict(json.load(f))


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
