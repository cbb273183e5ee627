"""The end-of-training table: the policy before vs after PPO, and which candidate it routes each domain to."""
from __future__ import annotations

from rr1_jax.eval.report import MethodResult
from rr1_jax.eval.scoring import CALLS_PREFIX, OVERALL

_ROWS = (("EM", "em"), ("reward", "reward"), ("format ok", "format"), ("routed calls / question", "calls"),
         ("cost / question (tokens x $/1M)", "cost"))


def _value(result: MethodResult, metric: str) -> str:
    v = result.overall(metric)
    return "n/a" if v is None else f"{v:.3f}"


def summary_table(before: MethodResult, after: MethodResult) -> str:
    """Markdown: overall metrics before/after, then the most-called candidate per data source after."""
    lines = ["| metric (greedy, validation) | before PPO | after PPO |", "|---|---|---|"]
    lines += [f"| {label} | {_value(before, key)} | {_value(after, key)} |" for label, key in _ROWS]
    lines += ["", "| domain | questions | EM after | calls per question by candidate (after PPO) |",
              "|---|---|---|---|"]
    groups = after.per_seed[0]
    for group in sorted(g for g in groups if g != OVERALL):
        row = groups[group]
        calls = sorted(((k[len(CALLS_PREFIX):], v) for k, v in row.items() if k.startswith(CALLS_PREFIX) and v),
                       key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {v:.2f}" for name, v in calls) or "none"
        lines.append(f"| {group} | {int(row['n'])} | {row['em']:.2f} | {shown} |")
    return "\n".join(lines)


def print_summary(summary: dict, config) -> None:
    if summary.get("copy_losses"):
        losses = summary["copy_losses"]
        print(f"\ncopy warm-up: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if summary.get("sft_losses"):
        losses = summary["sft_losses"]
        print(f"\nSFT warm start: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if "before" in summary and "after" in summary:
        r = config.reward
        early = f" (alpha={r.early_alpha} for the first {r.early_steps})" if r.early_steps else ""
        print(f"\nRouter-R1 PPO, alpha={r.alpha}: {config.train.total_steps} iterations{early}\n")
        print(summary_table(summary["before"], summary["after"]))
    if summary.get("seconds"):
        print("\nwall seconds: " + ", ".join(f"{name} {s:.0f}" for name, s in summary["seconds"].items() if s))
    if summary.get("export"):
        print(f"\nactor exported to {summary['export']} (HF format)")
