"""benchmarks/gpu_check.sh end to end on CPU (tiny config), and the bounds it divides by."""
import os
import re
import subprocess
import sys

import pytest

from benchmarks.gpu_check import decode_bytes_per_step, ppo_iteration_flops
from benchmarks.train_step import forward_flops
from rr1_jax.model.config import ModelConfig
from rr1_jax.parallel.chips import CHIPS, chip_spec
from rr1_jax.parallel.memory import MeshShape
from tests.xla_env import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _value(table: str, metric: str) -> str:
    match = re.search(rf"^\| {re.escape(metric)} +\| (.*) \|$", table, re.MULTILINE)
    assert match, f"no row {metric!r} in:\n{table}"
    return match.group(1)


@pytest.mark.slow
def test_gpu_check_smoke_run_on_cpu(tmp_path):
    log = tmp_path / "check.log"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable, "GPU_CHECK_LOG": str(log)}
    env["XLA_FLAGS"] = xla_flags()  # one device
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "| device " in out and "cpu" in _value(out, "device")
    assert "jax " in _value(out, "versions")
    assert float(_value(out, "decode tokens/s").replace(",", "")) > 0
    assert float(_value(out, "update step (ppo_iteration)").split()[0]) > 0
    assert _value(out, "decode % of HBM bound") == "n/a"  # a CPU has no known HBM figures
    assert _value(out, "update MFU (bf16 peak)").startswith("n/a")
    assert "tiny" in _value(out, "decode workload")
    assert log.read_text().strip().endswith(out.strip().splitlines()[-1])  # the wrapper tees into the log


def test_chip_table_lookup():
    assert chip_spec("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert chip_spec("NVIDIA H200").hbm_bandwidth == 4800e9
    assert chip_spec("NVIDIA GH200 480GB").name == "GH200"  # not the H200's 141 GB
    assert chip_spec("TPU v5 lite").name == "TPU v5e" and chip_spec("TPU v5").name == "TPU v5p"
    assert chip_spec("NVIDIA L40S").name == "L40S" and chip_spec("NVIDIA L4").name == "L4"
    assert chip_spec("cpu") is None
    assert CHIPS["v5e"].hbm_bytes == 16 * 2 ** 30


def test_decode_bytes_per_step_by_hand():
    config = ModelConfig.tiny(dtype="bfloat16", param_dtype="bfloat16")  # untied head: embed + lm_head
    weights = config.num_params * 2
    kv = 2 * 2 * 8 * 40 * 2 * 16 * 2  # K and V: layers x slots x cache x kv heads x head_dim x bf16
    assert decode_bytes_per_step(config, 8, 40, MeshShape()) == weights + kv + 8 * 40 + 8 * 512 * 4
    # two slots' shares per chip on fsdp=4; the decode rules keep whole weights on every chip
    assert decode_bytes_per_step(config, 8, 40, MeshShape(fsdp=4)) == weights + (kv + 8 * 40 + 8 * 512 * 4) // 4


def test_ppo_iteration_flops_counts_five_actor_and_four_critic_forwards():
    config = ModelConfig.tiny()
    rows, prompt, response = 4, 8, 24
    layer_params = config.num_params - 2 * config.vocab_size * config.hidden_size
    per_token = 2 * layer_params + 4 * config.num_layers * 32 * config.num_heads * config.head_dim
    head = 2 * config.hidden_size * config.vocab_size * rows * response
    assert forward_flops(config, rows * 32, 32, rows * response, True) == per_token * rows * 32 + head
    assert ppo_iteration_flops(config, rows, prompt, response) == 9 * per_token * rows * 32 + 5 * head


def test_sizes_fit_whole_rows_to_every_chip():
    from benchmarks.gpu_check import CheckSizes

    sizes = CheckSizes(batch=60, rows=16, micro_batch=4).fit_to(8)
    assert (sizes.batch, sizes.micro_batch, sizes.rows) == (64, 8, 16)
    assert CheckSizes(rows=20, micro_batch=4).fit_to(1).rows == 24  # two mini-batches of whole micro-batches
    assert CheckSizes().fit_to(1) == CheckSizes()
