"""launch/tpu_pod.sh without gcloud: syntax, help, dry-run commands (API keys never printed), and mesh presets that
agree with the memory model's plans."""
import os
import re
import subprocess

import pytest

from rr1_jax.model.config import ModelConfig
from rr1_jax.parallel import memory, memory_plan
from rr1_jax.parallel.chips import CHIPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "launch/tpu_pod.sh"


def _run(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env)
    return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=60)


def test_syntax_and_help():
    assert subprocess.run(["bash", "-n", SCRIPT], cwd=ROOT).returncode == 0
    out = _run("--help")
    assert out.returncode == 0
    for command in ("create", "setup", "stage", "train", "logs", "delete"):
        assert re.search(rf"^  {command} ", out.stdout, re.MULTILINE)
    assert "v5p-8" in out.stdout and "v4-32" in out.stdout
    bad = _run("bogus")
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_dry_run_train_forwards_keys_without_printing_them():
    secret = "sk-do-not-print-9f2c"
    out = _run("train", "--config.seed=3", DRY_RUN="1", NVIDIA_API_KEY=secret, ACCELERATOR="v4-32",
               CONFIG="configs/qwen3b.py", TPU_NAME="pod1", ZONE="us-central2-b")
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout + out.stderr
    assert "forwarding API keys: NVIDIA_API_KEY" in out.stdout
    assert "tpu-vm scp" in out.stdout and "--worker=all" in out.stdout
    command = out.stdout.replace("\\", "")
    assert "launch/train.py --config=configs/qwen3b.py --config.mesh.data=1 --config.mesh.fsdp=16" in command
    assert "--config.seed=3" in command and "--zone=us-central2-b" in command


def test_dry_run_stage_copies_a_directory_to_every_worker(tmp_path):
    weights = tmp_path / "Qwen2.5-3B-Instruct"
    weights.mkdir()
    out = _run("stage", str(weights), DRY_RUN="1", TPU_NAME="pod1", REMOTE_DIR="rr1")
    assert out.returncode == 0, out.stderr
    command = out.stdout.replace("\\", "")
    assert f"tpu-vm scp --recurse {weights} pod1:rr1/ --worker=all" in command
    assert "mkdir -p rr1" in command and "as rr1/Qwen2.5-3B-Instruct on every worker" in command
    missing = _run("stage", str(tmp_path / "nothing"), DRY_RUN="1")
    assert missing.returncode == 2 and "usage: launch/tpu_pod.sh stage LOCAL_DIRECTORY" in missing.stderr


def test_dry_run_setup_installs_the_pinned_jax_for_tpu():
    out = _run("setup", DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    pin = re.search(r"^jax==(\S+)", open(os.path.join(ROOT, "requirements.txt")).read(), re.MULTILINE).group(1)
    command = out.stdout.replace("\\", "")
    assert f"jax[tpu]=={pin}" in command and "libtpu_releases.html" in command
    assert "pip install -q -r requirements.txt" in command


# (accelerator, chips, chip, config, rows the plan is made for): v4-8 and v5e-8 cannot hold 6144-token rows
PRESETS = [
    ("v4-8", 4, "v4", "llama3b", 3072), ("v4-8", 4, "v4", "qwen3b", 4096),
    ("v4-32", 16, "v4", "llama3b", 6144), ("v4-32", 16, "v4", "qwen3b", 6144),
    ("v5litepod-8", 8, "v5e", "llama3b", 3072),
    ("v5litepod-16", 16, "v5e", "llama3b", 6144), ("v5litepod-16", 16, "v5e", "qwen3b", 6144),
    ("v5p-8", 4, "v5p", "llama3b", 6144), ("v5p-8", 4, "v5p", "qwen3b", 6144),
]
MODELS = {"llama3b": "llama3_2_3b", "qwen3b": "qwen2_5_3b"}


@pytest.mark.parametrize("accelerator,chips,chip,config,rows", PRESETS)
def test_mesh_presets_follow_the_memory_plan(accelerator, chips, chip, config, rows):
    out = _run("mesh", ACCELERATOR=accelerator, CONFIG=f"configs/{config}.py")
    flags = dict(re.findall(r"--config\.([\w.]+)=(\S+)", out.stdout))
    data, fsdp, tensor = (int(flags[f"mesh.{axis}"]) for axis in ("data", "fsdp", "tensor"))
    assert data * fsdp * tensor == chips
    base = memory.TrainingSetup.router_r1(seq_len=rows, response_len=rows - 2048)
    mesh, setup, _ = memory_plan.plan(ModelConfig.named(MODELS[config]), CHIPS[chip], chips, base)
    assert (fsdp, tensor, flags["model.remat"]) == (mesh.fsdp, mesh.tensor, setup.remat)
    # the trained responses are cut to what the rows the plan is made for leave after a 2048-token prompt
    assert int(flags.get("rollout.max_response_tokens", 4096)) == rows - 2048
