"""Accelerator check: decode tokens/s against the HBM-bandwidth bound, and the PPO update's MFU against the chip's
bf16 peak, with randomly initialised Llama-3.2-1B-size weights (nothing is downloaded).

    benchmarks/gpu_check.sh                  # on a GPU / TPU VM (the wrapper sets XLA flags and keeps a log)
    .venv/bin/python benchmarks/gpu_check.py --smoke     # tiny config on CPU (automatic when no accelerator)

Decode: `Sampler` prefill + one greedy `decode_segment` of `--new-tokens` steps over `--batch` slots, bf16 weights
and KV cache (what a rollout holds). A decode step must read every weight and the whole decode state (the
attention reads all cache entries), so steps/s <= HBM bandwidth / those bytes per chip.
Update: one `PPOTrainer.ppo_iteration` (π_old and π_ref log-probs, critic values, critic and actor mini-batch
updates) with f32 master weights and bf16 compute. Model FLOPs count the algorithm without rematerialisation:
5 actor forwards (2 in prepare + 3 for forward/backward) and 4 critic forwards.
All devices form one `fsdp` mesh; bounds and peaks are per chip, MFU divides by the peak of all chips.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import time
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.train_step import forward_flops, random_batch  # noqa: E402
from rr1_jax.generate import Sampler, SamplingParams, count_compilations  # noqa: E402
from rr1_jax.model.config import ModelConfig  # noqa: E402
from rr1_jax.model.critic import critic_from_policy  # noqa: E402
from rr1_jax.model.transformer import init_model  # noqa: E402
from rr1_jax.parallel.chips import ChipSpec, chip_spec  # noqa: E402
from rr1_jax.parallel.memory import MeshShape, TrainingSetup, estimate_memory, kv_cache_bytes, param_bytes  # noqa: E402
from rr1_jax.parallel.mesh import DECODE_RULES, make_mesh, shard_params  # noqa: E402
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig  # noqa: E402
from rr1_jax.rl.trainer import PPOTrainer  # noqa: E402


@dataclasses.dataclass(frozen=True)
class CheckSizes:
    """Workload of one check. Decode: slots x (prompt + new tokens). Update: rows x (prompt + response)."""

    model: str = "llama3_2_1b"
    batch: int = 64
    prompt: int = 512
    new_tokens: int = 128
    rows: int = 16
    train_prompt: int = 256
    train_response: int = 768
    micro_batch: int = 4
    logprob_chunk: int = 256
    remat: str = "full"
    steps: int = 3

    @classmethod
    def smoke(cls) -> "CheckSizes":
        """CPU-sized: the tiny test config, a few slots and rows, one timed step."""
        return cls(model="tiny", batch=4, prompt=16, new_tokens=8, rows=4, train_prompt=8, train_response=24,
                   micro_batch=2, logprob_chunk=8, steps=1)

    def fit_to(self, shards: int) -> "CheckSizes":
        """Whole rows on every chip: slots and micro-batch rounded up to multiples of `shards`, and rows to two
        mini-batches of whole micro-batches."""
        micro = shards * math.ceil(self.micro_batch / shards)
        rows = 2 * micro * math.ceil(max(self.rows, 2 * micro) / (2 * micro))
        return dataclasses.replace(self, batch=shards * math.ceil(self.batch / shards), micro_batch=micro, rows=rows)


# ------------------------------------------------------------------------------------------------ bounds
def decode_bytes_per_step(config: ModelConfig, slots: int, cache_len: int, mesh: MeshShape) -> int:
    """Bytes one chip must read per decode step: its decode-sharded weights + its share of the decode state
    (KV cache of `cache_len` entries, validity mask, logits)."""
    decode_setup = TrainingSetup(param_dtype=config.param_dtype, rollout_slots=slots, cache_len=cache_len,
                                 cache_dtype=config.dtype)
    return param_bytes(config, "actor", mesh, DECODE_RULES) + kv_cache_bytes(config, decode_setup, mesh)


def ppo_iteration_flops(config: ModelConfig, rows: int, prompt: int, response: int) -> float:
    """Model FLOPs of one `ppo_iteration`: prepare (π_old, π_ref: actor forwards with the LM head over the
    response; values: critic forward) + critic and actor forward/backward (3x a forward each)."""
    seq = prompt + response
    tokens = rows * seq
    actor = forward_flops(config, tokens, seq, rows * response, True)
    critic = forward_flops(config, tokens, seq, 0, False)
    return 5 * actor + 4 * critic


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


# ------------------------------------------------------------------------------------------------ measurements
def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def check_decode(sizes: CheckSizes, mesh, mesh_shape: MeshShape, chip: Optional[ChipSpec]) -> list[tuple[str, str]]:
    config = ModelConfig.named(sizes.model, dtype="bfloat16", param_dtype="bfloat16")
    model = init_model(config, seed=0)
    graphdef, params = nnx.split(model, nnx.Param)
    params = shard_params(params, DECODE_RULES, mesh)
    del model
    b, p, n = sizes.batch, sizes.prompt, sizes.new_tokens
    sampler = Sampler(graphdef, SamplingParams(greedy=True), eos_ids=(), mesh=mesh)
    prompts = np.random.default_rng(0).integers(1, config.vocab_size, size=(b, p)).astype(np.int32)
    lengths = np.full((b,), p, np.int32)

    def once():
        state = sampler.init_state(config, b, p + n, turn_budget=n)
        state, prefill_s = _timed(lambda: sampler.prefill(params, state, prompts, lengths))
        (state, out), decode_s = _timed(lambda: sampler.decode_segment(params, state, n))
        return int(np.asarray(out.num_tokens).sum()), prefill_s, decode_s

    with count_compilations() as compiles:
        once()
    generated, prefill_s, decode_s = min((once() for _ in range(max(1, sizes.steps))), key=lambda r: r[2])
    if generated != b * n:
        raise RuntimeError(f"decode produced {generated} tokens, expected {b * n}")
    step_s = decode_s / n
    per_step = decode_bytes_per_step(config, b, p + n, mesh_shape)
    rows = [("decode workload", f"{sizes.model} bf16, {b} slots, prompt {p}, {n} greedy new tokens"),
            ("decode compile (prefill + segment)", f"{compiles.seconds:.1f} s"),
            ("prefill", f"{1e3 * prefill_s:.1f} ms ({b * p / prefill_s:,.0f} tokens/s)"),
            ("decode step", f"{1e3 * step_s:.2f} ms"),
            ("decode tokens/s", f"{b / step_s:,.0f}"),
            ("HBM bytes read per step per chip", f"{_bytes(per_step)} (weights + KV cache + logits)"),
            ("achieved HBM bandwidth", f"{per_step / step_s / 1e9:,.1f} GB/s")]
    if chip is None:
        rows += [("decode tokens/s HBM bound", "n/a (unknown chip)"), ("decode % of HBM bound", "n/a")]
    else:
        bound_step = per_step / chip.hbm_bandwidth
        rows += [("decode tokens/s HBM bound", f"{b / bound_step:,.0f} ({chip.hbm_bandwidth / 1e9:,.0f} GB/s)"),
                 ("decode % of HBM bound", _percent(bound_step / step_s))]
    return rows


def check_update(sizes: CheckSizes, mesh, mesh_shape: MeshShape, chip: Optional[ChipSpec]) -> list[tuple[str, str]]:
    config = ModelConfig.named(sizes.model, dtype="bfloat16", param_dtype="float32", remat=sizes.remat)
    actor = init_model(config, seed=0)
    critic = critic_from_policy(actor, head_std=0.02)
    ppo = PPOConfig(mini_batch_size=sizes.rows // 2, micro_batch_size=sizes.micro_batch,
                    logprob_chunk=sizes.logprob_chunk)
    trainer = PPOTrainer(actor, critic, ppo, OptimConfig(lr=1e-6), OptimConfig(lr=1e-5), mesh)
    del actor, critic
    state = trainer.init_state(copy=False)
    traj = random_batch(sizes.rows, sizes.train_prompt, sizes.train_response, config.vocab_size)
    scores = np.linspace(-1, 1, sizes.rows).astype(np.float32)
    with count_compilations() as compiles:
        (state, _), first_s = _timed(lambda: trainer.ppo_iteration(state, traj, scores))
    times = []
    for _ in range(max(1, sizes.steps)):
        (state, metrics), seconds = _timed(lambda: trainer.ppo_iteration(state, traj, scores))
        times.append(seconds)
    if not all(np.isfinite(v) for v in metrics.values()):
        raise RuntimeError(f"PPO update produced non-finite metrics: {metrics}")
    step_s = float(np.median(times))
    flops = ppo_iteration_flops(config, sizes.rows, sizes.train_prompt, sizes.train_response)
    seq = sizes.train_prompt + sizes.train_response
    setup = TrainingSetup(param_dtype="float32", compute_dtype="bfloat16", remat=sizes.remat,
                          micro_batch=sizes.micro_batch, seq_len=seq, response_len=sizes.train_response,
                          logprob_chunk=sizes.logprob_chunk, rollout_slots=sizes.batch,
                          cache_len=sizes.prompt + sizes.new_tokens, prefill_len=sizes.prompt,
                          decode_param_dtype="bfloat16")
    estimate = estimate_memory(config, setup, mesh_shape)
    rows = [("update workload", f"{sizes.model} f32 weights / bf16 compute, remat {sizes.remat}, {sizes.rows} rows x "
                                f"{seq} tokens, mini-batch {ppo.mini_batch_size}, micro-batch {sizes.micro_batch}"),
            ("update compile", f"{compiles.seconds:.1f} s (first iteration {first_s:.1f} s)"),
            ("update step (ppo_iteration)", f"{step_s:.3f} s ({sizes.rows * seq / step_s:,.0f} tokens/s)"),
            ("update model FLOP/s", f"{flops / step_s / 1e12:.3f} TFLOP/s")]
    if chip is None:
        rows += [("update MFU (bf16 peak)", "n/a (unknown chip)")]
    else:
        peak = chip.bf16_flops * mesh_shape.num_chips
        rows += [("update MFU (bf16 peak)", f"{_percent(flops / step_s / peak)} of {peak / 1e12:,.0f} TFLOP/s")]
    stats = jax.devices()[0].memory_stats() or {}
    measured = stats.get("peak_bytes_in_use")
    rows += [("peak memory, device 0", "n/a (backend reports none)" if measured is None else _bytes(measured)),
             ("memory model: update / rollout peak", f"{_bytes(estimate.update_peak)} / "
                                                      f"{_bytes(estimate.rollout_peak)} per chip")]
    return rows


def run_check(sizes: CheckSizes) -> list[tuple[str, str]]:
    """Both measurements on every local device; returns the table rows (metric, value)."""
    devices = jax.devices()
    sizes = sizes.fit_to(len(devices))
    mesh = make_mesh(1, len(devices), 1, devices)
    mesh_shape = MeshShape(fsdp=len(devices))
    chip = chip_spec(devices[0].device_kind)
    chip_text = "unknown (bounds print n/a)" if chip is None else (
        f"{chip.name}: {chip.hbm_bytes / 2 ** 30:.0f} GiB HBM, {chip.hbm_bandwidth / 1e9:,.0f} GB/s, "
        f"{chip.bf16_flops / 1e12:,.0f} bf16 TFLOP/s")
    rows = [("device", f"{len(devices)} x {devices[0].device_kind} ({jax.default_backend()})"),
            ("chip spec", chip_text),
            ("versions", f"jax {jax.__version__}, python {platform.python_version()}"),
            ("mesh", str(mesh_shape))]
    rows += check_decode(sizes, mesh, mesh_shape, chip)
    rows += check_update(sizes, mesh, mesh_shape, chip)
    return rows


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k:<{width}} | {v} |" for k, v in rows])


def parse_args(argv: Optional[Sequence[str]] = None) -> CheckSizes:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny config and sizes (the default when JAX sees no GPU/TPU)")
    defaults = CheckSizes()
    for field in dataclasses.fields(CheckSizes):
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(getattr(defaults, field.name)),
                            default=None, help=f"default {getattr(defaults, field.name)} (smoke: "
                                               f"{getattr(CheckSizes.smoke(), field.name)})")
    args = parser.parse_args(argv)
    smoke = args.smoke or jax.default_backend() == "cpu"
    sizes = CheckSizes.smoke() if smoke else defaults
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(CheckSizes)
                 if getattr(args, f.name) is not None}
    return dataclasses.replace(sizes, **overrides)


def main(argv: Optional[Sequence[str]] = None) -> None:
    sizes = parse_args(argv)
    print(f"gpu_check: {'smoke ' if sizes.model == 'tiny' else ''}run with {sizes}", flush=True)
    print(format_table(run_check(sizes)), flush=True)


if __name__ == "__main__":
    main()
