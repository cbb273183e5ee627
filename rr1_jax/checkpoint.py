"""Checkpoints for an exact resume (orbax `CheckpointManager`), pre-emption saves and HF export.

One checkpoint step holds two items:
  state   the TrainState pytree (actor, critic, ref, optimizer states, counters, rng, KL controller) — saved
          asynchronously from device, restored onto ANY mesh through abstract targets carrying shardings;
  extras  JSON: data iterator position, CostNormalizer window, metrics step, the run config (secrets redacted).
`keep` (max_to_keep) old steps are retained. A step that fails to restore (truncated/corrupted files) is skipped
with a warning, the previous one is used, and the bad step is renamed `unreadable-<step>` so later saves go on.
"""
from __future__ import annotations

import logging
import os
import signal
import warnings
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from rr1_jax.metrics import redact_secrets

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored."""


class TrainCheckpointer:
    """Save/restore (TrainState, extras) every `save_every` steps under `directory`, keeping the last `keep`."""

    def __init__(self, directory: str, *, keep: int = 3, save_every: int = 1, async_save: bool = True,
                 read_only: bool = False):
        if keep < 1 or save_every < 1:
            raise ValueError(f"checkpoint keep={keep} and save_every={save_every} must both be >= 1")
        self.directory = os.path.abspath(os.path.expanduser(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every, create=not read_only,
                                               enable_async_checkpointing=async_save, read_only=read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "extras"))

    # ------------------------------------------------------------------------------------------------ save
    def save(self, step: int, state, *, data_state: Optional[Mapping] = None,
             cost_normalizer: Optional[Mapping] = None, metrics_step: Optional[int] = None,
             config: Optional[Mapping] = None, force: bool = False) -> bool:
        """Start saving `state` (async) at `step`; returns False when `save_every` skips this step.

        data_state: `QABatchIterator.state_dict()`; cost_normalizer: `CostNormalizer.state_dict()`;
        config: the run config as a dict (`ConfigDict.to_dict()`), secret-looking keys are redacted.
        """
        extras = {"data": dict(data_state or {}), "cost_normalizer": dict(cost_normalizer or {}),
                  "metrics_step": int(step if metrics_step is None else metrics_step),
                  "config": redact_secrets(dict(config or {}))}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), extras=ocp.args.JsonSave(extras))
        return self._manager.save(int(step), args=args, force=force)

    def wait(self) -> None:
        """Block until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    # ------------------------------------------------------------------------------------------------ restore
    def all_steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> Optional[int]:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def restore(self, abstract_state, step: Optional[int] = None):
        """(step, state, extras) of the newest restorable checkpoint (or exactly `step`), or None if there is none.

        `abstract_state`: `jax.ShapeDtypeStruct`s with target shardings (`PPOTrainer.abstract_state()`), so the
        state lands directly on the current mesh whatever mesh saved it. A step that fails to restore is
        reported with a warning and the next older one is tried.
        """
        def args():
            return ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), extras=ocp.args.JsonRestore())

        return self._restore_newest(step, args, abstract_state, set_aside=True)

    def restore_actor(self, abstract_actor, step: Optional[int] = None):
        """(step, actor params as host NumPy arrays, extras) of the newest restorable checkpoint (or `step`), or
        None if there is none. Only the actor's arrays are read (orbax partial restore: the reference, critic
        and optimizer moments stay on disk), cast to `abstract_actor`'s dtypes. Unreadable steps are skipped
        with a warning but left in place: reading a run's actor does not change the run."""
        item = {"actor": abstract_actor}
        restore_args = jax.tree.map(lambda leaf: ocp.RestoreArgs(restore_type=np.ndarray, dtype=leaf.dtype), item)

        def args():
            return ocp.args.Composite(state=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                                   partial_restore=True),
                                      extras=ocp.args.JsonRestore())

        found = self._restore_newest(step, args, item, set_aside=False)
        return None if found is None else (found[0], found[1]["actor"], found[2])

    def _restore_newest(self, step: Optional[int], make_args: Callable, target, *, set_aside: bool):
        """(step, state, extras) restored with `make_args()` from the newest step that restores and matches
        `target`'s shapes (or exactly `step`); None when there are no steps."""
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint step {step} in {self.directory}; available: {steps}")
            steps = [step]
        unreadable = []
        for candidate in reversed(steps):
            try:
                restored = self._manager.restore(candidate, args=make_args())
                _check_shapes(restored.state, target)
            except Exception as e:  # noqa: BLE001 — any failure means this step is unusable
                warnings.warn(f"checkpoint step {candidate} in {self.directory} could not be restored "
                              f"({type(e).__name__}: {str(e)[:300]}); falling back to the previous step",
                              RuntimeWarning, stacklevel=3)
                unreadable.append(candidate)
                continue
            if unreadable and step is None and set_aside:
                self._set_aside(unreadable)
            return candidate, restored.state, dict(restored.extras)
        if steps:
            raise CheckpointError(f"none of the checkpoints {steps} in {self.directory} could be restored")
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Rename unreadable steps newer than the one restored to `unreadable-<step>` (kept for inspection):
        orbax saves no step at or below the newest one on disk, so left in place they would block the resumed
        run's saves up to that step."""
        if jax.process_index() == 0:
            for bad in steps:
                source, target = os.path.join(self.directory, str(bad)), os.path.join(self.directory,
                                                                                       f"unreadable-{bad}")
                while os.path.exists(target):
                    target += "-again"
                os.rename(source, target)
                log.warning("moved the unreadable checkpoint step %d to %s", bad, target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("rr1_jax checkpoint: unreadable steps set aside")
        self._manager.reload()


def _check_shapes(restored, abstract) -> None:
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract)):
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(f"restored array {got.shape}/{got.dtype} does not match target "
                                  f"{want.shape}/{want.dtype}")


class PreemptionGuard:
    """SIGTERM (pre-emption, `kill`) → a final save at the next step boundary.

        guard = PreemptionGuard().install()
        for step in ...:
            ...
            if guard.requested:
                checkpointer.save(step, state, ..., force=True); checkpointer.wait(); break

    The handler only sets a flag (saving from inside a signal handler could interrupt a device computation);
    `on_signal` runs in the handler for anything cheap (e.g. a log line). The previous handler is restored by
    `uninstall()`.
    """

    def __init__(self, signals=(signal.SIGTERM,), on_signal: Optional[Callable[[int], None]] = None):
        self.signals, self.on_signal = tuple(signals), on_signal
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        del frame
        self.requested = True
        log.warning("received signal %d: saving a checkpoint at the end of this step, then stopping", signum)
        if self.on_signal is not None:
            self.on_signal(signum)

    def install(self) -> "PreemptionGuard":
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def export_hf(actor, out_dir: str, dtype: str = "float32", tokenizer=None) -> str:
    """Write the actor (an NNX `Transformer`) as an HF directory (config.json + model.safetensors)."""
    from rr1_jax.model.weights import save_hf

    if jax.process_index() != 0:
        return out_dir
    return save_hf(actor, out_dir, dtype=dtype, tokenizer=tokenizer)
