"""A training run's actor at any checkpoint step: loaded for evaluation or serving, or exported as an HF directory
(`launch/export.py`), while the run goes on or long after it.

A run writes `<workdir>/policy/` when it starts: the actor's HF config.json and its tokenizer, i.e. an export
without weights. With it, one checkpoint step's actor is read alone (`TrainCheckpointer.restore_actor`; the
reference, critic and optimizer moments, three times the actor's size, stay on disk) into host memory, so
exporting a 3B run needs no accelerator.

    <workdir>/policy/        config.json + tokenizer files       (save_policy_spec)
    <workdir>/ckpt/<step>/   orbax steps                          (rr1_jax.checkpoint)
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Optional

from flax import nnx

from rr1_jax.checkpoint import CheckpointError, TrainCheckpointer
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import read_hf_config
from rr1_jax.model.tokenizer import load_tokenizer
from rr1_jax.model.transformer import Transformer, abstract_model
from rr1_jax.model.weights import save_hf, save_hf_metadata

POLICY_DIR = "policy"
CKPT_DIR = "ckpt"


def save_policy_spec(workdir: str, config: ModelConfig, tokenizer) -> str:
    """Write `<workdir>/policy/` (config.json + tokenizer): what reading a checkpoint's actor needs besides it."""
    return save_hf_metadata(config, os.path.join(workdir, POLICY_DIR), tokenizer=tokenizer)


def run_location(path: str) -> Optional[tuple[str, Optional[int]]]:
    """(work directory, step or None for the newest) when `path` is a training run's work directory or one of its
    checkpoint steps (`<workdir>/ckpt/<step>`); None for anything else."""
    path = os.path.abspath(os.path.expanduser(path))
    parent, name = os.path.split(path)
    if name.isdigit() and os.path.basename(parent) == CKPT_DIR:
        return os.path.dirname(parent), int(name)
    if os.path.isdir(os.path.join(path, CKPT_DIR)):
        return path, None
    return None


@dataclasses.dataclass
class RunPolicy:
    """One checkpoint step's actor, on the host, with the run's tokenizer and config."""

    workdir: str
    step: int
    model: Transformer
    tokenizer: object
    run_config: dict  # the config the run saved with the step (secrets redacted)

    @property
    def source(self) -> str:
        """The model the run started from (a path, or a family name for a randomly initialised policy)."""
        model = self.run_config.get("model", {})
        return model.get("path") or model.get("family") or self.workdir


def load_run_policy(path: str, step: Optional[int] = None, dtype: str = "float32") -> RunPolicy:
    """The actor of a run's newest readable checkpoint step, or of `step` (also given by a `<workdir>/ckpt/<step>`
    path), with parameters and compute in `dtype`. Raises CheckpointError naming the fix when `path` holds no
    run, no step or no policy spec."""
    location = run_location(path)
    if location is None:
        raise CheckpointError(f"{path}: not a training run's work directory (no {CKPT_DIR}/ inside) nor one of its "
                              f"checkpoint steps ({CKPT_DIR}/<step>)")
    workdir, step_in_path = location
    if step is not None and step_in_path is not None and step != step_in_path:
        raise CheckpointError(f"{path} is checkpoint step {step_in_path}, but step {step} was asked for")
    step = step if step is not None else step_in_path
    spec = os.path.join(workdir, POLICY_DIR)
    if not os.path.isfile(os.path.join(spec, "config.json")):
        raise CheckpointError(f"{workdir}: no {POLICY_DIR}/config.json, which a run writes when it starts (runs "
                              f"older than this file do not): rerun launch/train.py with the run's config and "
                              f"--workdir={workdir}; it writes {POLICY_DIR}/ and, with no steps left, exports the "
                              f"actor to {workdir}/hf_export")
    config = read_hf_config(spec, dtype=dtype, param_dtype=dtype)
    graphdef, abstract = nnx.split(abstract_model(config), nnx.Param)  # ShapeDtypeStruct leaves
    target = nnx.to_pure_dict(abstract)
    with _orbax_quiet():
        checkpointer = TrainCheckpointer(os.path.join(workdir, CKPT_DIR), async_save=False, read_only=True)
        try:
            found = checkpointer.restore_actor(target, step)
        finally:
            checkpointer.close()
    if found is None:
        raise CheckpointError(f"{workdir}: no checkpoint steps yet in {CKPT_DIR}/ (the first is saved after "
                              f"iteration checkpoint.save_every)")
    found_step, actor, extras = found
    nnx.replace_by_pure_dict(abstract, actor)
    return RunPolicy(workdir, found_step, nnx.merge(graphdef, abstract), load_tokenizer(spec),
                     dict(extras.get("config", {})))


@contextlib.contextmanager
def _orbax_quiet():
    """Orbax logs each read at INFO and read-only mode at WARNING (through absl); an unreadable step still warns."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_run(path: str, out_dir: Optional[str] = None, step: Optional[int] = None,
               dtype: str = "float32") -> tuple[int, str]:
    """Export a run's actor (newest readable step, or `step`) as an HF directory; (step, directory).
    `out_dir` defaults to `<workdir>/hf_export-<step>`."""
    policy = load_run_policy(path, step)
    out_dir = out_dir or os.path.join(policy.workdir, f"hf_export-{policy.step}")
    return policy.step, save_hf(policy.model, out_dir, dtype=dtype, tokenizer=policy.tokenizer)
