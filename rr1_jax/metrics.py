"""Training metrics: JSONL (always), TensorBoard (tensorboardX), optional Weights & Biases, a tqdm progress bar
and, at the end, PNG plots of reward / exact match / cost / routes per episode over steps.

Only process 0 writes anything. Metrics are flat dicts of scalars; keys that look like secrets are dropped and
configs are redacted before they are logged (API keys come from the environment and never reach a file).
"""
from __future__ import annotations

import json
import math
import os
import re
import resource
import sys
import time
import warnings
from typing import Any, Mapping, Optional

SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|authorization|bearer|credential)", re.IGNORECASE)

# Episode metrics the rollout reports (per PPO step, mean over the batch's episodes) and how they are shown.
EPISODE_METRICS = {"reward": "episode/reward", "exact_match": "episode/em", "cost": "episode/cost",
                   "routes": "episode/routes"}
PROGRESS_FIELDS = {"reward": "episode/reward", "EM": "episode/em", "cost": "episode/cost",
                   "routes": "episode/routes", "tok/s": "perf/tokens_per_s"}
TOKENS_KEY = "perf/tokens"  # tokens processed in the step: the logger derives perf/tokens_per_s from it
ITERATION_KEY = "perf/iteration_s"  # the step's own wall seconds (rollout + update), when the loop reports them


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GiB (getrusage: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2 ** 30 if sys.platform == "darwin" else 2 ** 20)


def redact_secrets(tree: Any) -> Any:
    """A JSON-able copy of `tree` with the value under every secret-looking key replaced by "<redacted>"."""
    if isinstance(tree, Mapping):
        return {str(k): "<redacted>" if SECRET_KEY.search(str(k)) else redact_secrets(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact_secrets(v) for v in tree]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    return str(tree)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if SECRET_KEY.search(key):
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {key!r} is not a scalar ({type(value).__name__}); log numbers only") from None
    return out


class MetricsLogger:
    """`log(step, metrics)` each PPO iteration, `close()` at the end (writes the plots).

    log_dir/metrics.jsonl, log_dir/tb/events.*, log_dir/plots/*.png. `process_index` defaults to
    `jax.process_index()`; non-zero processes are silent no-ops. `start_step`: the step a resumed run restarts
    from; rows logged after it by the interrupted run (steps it will redo) move to metrics.superseded.jsonl,
    TensorBoard purges them, W&B resumes the same run and the progress bar starts there.
    """

    def __init__(self, log_dir: str, *, total_steps: Optional[int] = None, tensorboard: bool = True,
                 wandb: bool = False, wandb_project: str = "rr1_jax", run_name: Optional[str] = None,
                 progress: bool = True, config: Optional[Mapping] = None, process_index: Optional[int] = None,
                 start_step: int = 0):
        if process_index is None:
            import jax
            process_index = jax.process_index()
        self.active = process_index == 0
        self.log_dir = os.path.abspath(os.path.expanduser(log_dir))
        self.jsonl_path = os.path.join(self.log_dir, "metrics.jsonl")
        self._tb = self._wandb = self._bar = None
        self._last_time: Optional[float] = None
        if not self.active:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        safe_config = redact_secrets(dict(config or {}))
        if config is not None:
            with open(os.path.join(self.log_dir, "config.json"), "w") as f:
                json.dump(safe_config, f, indent=2, sort_keys=True)
        superseded = self._set_aside_rows_after(start_step)
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(self.log_dir, "tb"),
                                     purge_step=start_step + 1 if superseded else None)
        if wandb:
            try:
                import wandb as wandb_lib
            except ImportError:
                warnings.warn("metrics.wandb=True but wandb is not installed: pip install wandb, or turn it off",
                              RuntimeWarning, stacklevel=2)
            else:
                self._wandb = wandb_lib.init(project=wandb_project, name=run_name, config=safe_config,
                                             dir=self.log_dir, id=self._wandb_run_id(), resume="allow")
        if progress:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, desc="ppo", unit="step", dynamic_ncols=True)

    def _set_aside_rows_after(self, step: int) -> int:
        """Move metrics.jsonl rows with a step above `step` to metrics.superseded.jsonl; returns how many."""
        rows = self.history()
        later = [r for r in rows if r["step"] > step]
        if later:
            with open(os.path.join(self.log_dir, "metrics.superseded.jsonl"), "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in later)
            with open(self.jsonl_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows if r["step"] <= step)
        return len(later)

    def _wandb_run_id(self) -> str:
        """One W&B run id per log directory, so a resumed run continues the same W&B run."""
        path = os.path.join(self.log_dir, "wandb_run_id")
        if not os.path.isfile(path):
            with open(path, "w") as f:
                f.write(os.urandom(8).hex())
        with open(path) as f:
            return f.read().strip()

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.active:
            return
        scalars = _scalars(metrics)
        now = time.perf_counter()
        if TOKENS_KEY in scalars and "perf/tokens_per_s" not in scalars:
            # over the iteration itself when the loop reports it, not the checkpoint save or validation around it
            seconds = scalars.get(ITERATION_KEY, None if self._last_time is None else now - self._last_time)
            if seconds is not None:
                scalars["perf/tokens_per_s"] = scalars[TOKENS_KEY] / max(seconds, 1e-9)
        self._last_time = now
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
        if self._tb is not None:
            for key, value in scalars.items():
                if math.isfinite(value):
                    self._tb.add_scalar(key, value, int(step))
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=int(step))
        if self._bar is not None:
            self._bar.update(max(0, int(step) - self._bar.n))
            shown = {name: f"{scalars[key]:.3g}" for name, key in PROGRESS_FIELDS.items() if key in scalars}
            self._bar.set_postfix(shown, refresh=True)

    def history(self) -> list[dict]:
        """Every line of metrics.jsonl (includes earlier runs appended to the same directory, e.g. after resume)."""
        if not os.path.isfile(self.jsonl_path):
            return []
        with open(self.jsonl_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def plot(self) -> list[str]:
        """PNG per episode metric present in the history (value over steps); returns the written paths."""
        if not self.active:
            return []
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.history()
        out_dir = os.path.join(self.log_dir, "plots")
        written = []
        for name, key in EPISODE_METRICS.items():
            points = sorted((r["step"], r[key]) for r in rows if key in r)
            if not points:
                continue
            os.makedirs(out_dir, exist_ok=True)
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot([s for s, _ in points], [v for _, v in points], marker="." if len(points) < 50 else None)
            ax.set_xlabel("PPO step")
            ax.set_ylabel(f"{name} per episode")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = os.path.join(out_dir, f"{name}.png")
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        return written

    def close(self) -> list[str]:
        """Flush and close every sink, then write the plots (returns their paths)."""
        if not self.active:
            return []
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        return self.plot()
