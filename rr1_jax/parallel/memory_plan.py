"""Planning with the memory model: per-chip tables for named machines, and `plan()`, the best mesh and knobs
that fit a machine (`rr1_jax.parallel.memory` holds the formulas).

    python -m rr1_jax.parallel.memory_plan                   # components per chip, 3B configs, upstream sizes
    python -m rr1_jax.parallel.memory_plan --plan            # recommended mesh / slots / remat / micro-batch
    python -m rr1_jax.parallel.memory_plan --plan --seq-len 4096 --response-len 2048 --param-dtype bfloat16
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Optional, Sequence

from rr1_jax.model.config import ModelConfig
from rr1_jax.parallel.chips import CHIPS, GIB, ChipSpec
from rr1_jax.parallel.memory import MemoryEstimate, MeshShape, TrainingSetup, estimate_memory


@dataclasses.dataclass(frozen=True)
class Target:
    """A machine to plan for: its name, chip and the mesh a run uses on it."""

    name: str
    chip: ChipSpec
    mesh: MeshShape


TARGETS = (
    Target("TPU v4-8 (4 chips)", CHIPS["v4"], MeshShape(fsdp=4)),
    Target("TPU v5e-8", CHIPS["v5e"], MeshShape(fsdp=8)),
    Target("TPU v5p-8 (4 chips)", CHIPS["v5p"], MeshShape(fsdp=4)),
    Target("one 80 GB GPU", CHIPS["a100-80gb"], MeshShape()),
    Target("TPU v4-32 (16 chips)", CHIPS["v4"], MeshShape(fsdp=16)),
)

COLUMNS = ("actor", "ref", "critic", "actor_optimizer", "critic_optimizer", "gradients", "activations",
           "decode_weights", "kv_cache", "prefill_workspace")


def memory_table(models: Sequence[str], setup: TrainingSetup, targets: Sequence[Target] = TARGETS) -> str:
    """A Markdown table (GiB per chip) of every component, both phase peaks and whether the peak fits."""
    short = {"actor_optimizer": "actor opt", "critic_optimizer": "critic opt", "decode_weights": "decode W",
             "prefill_workspace": "prefill ws", "activations": "activ."}
    header = ["model", "machine", "mesh"] + [short.get(c, c) for c in COLUMNS] + ["rollout", "update", "HBM", "fits"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in models:
        config = ModelConfig.named(name)
        for target in targets:
            est = estimate_memory(config, setup, target.mesh)
            cells = [name, target.name, str(target.mesh)] + [f"{getattr(est, c) / GIB:.1f}" for c in COLUMNS]
            cells += [f"{est.rollout_peak / GIB:.1f}", f"{est.update_peak / GIB:.1f}",
                      f"{target.chip.hbm_bytes / GIB:.0f}", "yes" if est.fits(target.chip) else "**no**"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan(config: ModelConfig, chip: ChipSpec, num_chips: int, base: TrainingSetup, mini_batch: int = 32,
         max_tensor: int = 8) -> Optional[tuple[MeshShape, TrainingSetup, MemoryEstimate]]:
    """The best setup that fits `num_chips` chips, or None. Only knobs that leave the PPO maths unchanged move:

    * mesh `fsdp x tensor` (data = 1; tensor <= max_tensor, it splits heads, MLP and attention scores);
    * `rollout_slots`: episodes decoded at once (a 64-episode batch runs in 64 / slots waves), a multiple of
      the batch shards;
    * `decode_rules`: a replicated decode copy of the actor ("decode", faster steps) or the training shards;
    * `remat`: "dots_no_batch" (faster) or "full" (least memory);
    * `micro_batch`: a multiple of the batch shards dividing `mini_batch` (accumulation is exact, so it only
      trades memory for speed).

    Preference, most important first: more slots per wave, the decode copy, dots_no_batch, less tensor
    parallelism, larger micro-batches.
    """
    best, best_key = None, None
    for tensor in (t for t in _divisors(num_chips) if t <= max_tensor):
        mesh = MeshShape(fsdp=num_chips // tensor, tensor=tensor)
        shards = mesh.batch_shards
        micros = [m for m in range(shards, mini_batch + 1, shards) if mini_batch % m == 0] or [shards]
        slot_options = [s for s in (64, 32, 16, 8, 4, 2, 1) if s <= base.rollout_slots and s % shards == 0]
        for slots in slot_options:
            for decode_rules in ("decode", "train"):
                for remat in ("dots_no_batch", "full"):
                    for micro in micros:
                        setup = base.replace(rollout_slots=slots, decode_rules=decode_rules, remat=remat,
                                             micro_batch=micro)
                        estimate = estimate_memory(config, setup, mesh)
                        if not estimate.fits(chip):
                            continue
                        key = (slots, decode_rules == "decode", remat == "dots_no_batch", -tensor, micro)
                        if best_key is None or key > best_key:
                            best, best_key = (mesh, setup, estimate), key
    return best


PLAN_TARGETS = (
    ("TPU v4-8", CHIPS["v4"], 4),
    ("TPU v4-32", CHIPS["v4"], 16),
    ("TPU v5e-8", CHIPS["v5e"], 8),
    ("TPU v5p-8", CHIPS["v5p"], 4),
    ("one 80 GB GPU", CHIPS["a100-80gb"], 1),
    ("one H200", CHIPS["h200"], 1),
)


def plan_table(models: Sequence[str], base: TrainingSetup, targets=PLAN_TARGETS) -> str:
    """Markdown: the recommended mesh and knobs per model and machine (see `plan`), with the per-chip peaks."""
    header = ["model", "machine", "mesh", "slots/wave", "decode", "remat", "micro", "rollout GiB", "update GiB",
              "HBM GiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in models:
        config = ModelConfig.named(name)
        for label, chip, chips in targets:
            found = plan(config, chip, chips, base)
            if found is None:
                cells = [name, label, "does not fit", "", "", "", "", "", "", f"{chip.hbm_bytes / GIB:.0f}"]
            else:
                mesh, setup, est = found
                cells = [name, label, f"fsdp={mesh.fsdp} tensor={mesh.tensor}", str(setup.rollout_slots),
                         "copy" if setup.decode_rules == "decode" else "train shards", setup.remat,
                         str(setup.micro_batch), f"{est.rollout_peak / GIB:.1f}", f"{est.update_peak / GIB:.1f}",
                         f"{chip.hbm_bytes / GIB:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Per-chip memory (GiB) of a PPO run, by component.")
    parser.add_argument("--models", default="llama3_2_3b,qwen2_5_3b", help="comma-separated ModelConfig names")
    defaults = TrainingSetup.router_r1()
    for field in dataclasses.fields(TrainingSetup):
        value = getattr(defaults, field.name)
        kind = {bool: lambda s: s.lower() in ("1", "true", "yes"), int: int,
                type(None): lambda s: None if s.lower() in ("", "none") else s}.get(type(value), str)
        parser.add_argument("--" + field.name.replace("_", "-"), type=kind, default=value)
    parser.add_argument("--plan", action="store_true",
                        help="instead: the recommended mesh / slots / remat / micro-batch per machine")
    args = parser.parse_args(argv)
    setup = TrainingSetup(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingSetup)})
    print(f"setup: {setup}\n")
    models = args.models.split(",")
    print(plan_table(models, setup) if args.plan else memory_table(models, setup))


if __name__ == "__main__":
    main()
