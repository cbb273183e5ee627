#!/usr/bin/env bash
# Accelerator check (decode tokens/s vs the HBM bound, PPO-update MFU vs the bf16 peak) with random
# Llama-3.2-1B-size weights. Installs and downloads nothing; run it from a set-up checkout (`make install`).
#
#   benchmarks/gpu_check.sh                    # GPU / TPU: full sizes; CPU: the tiny smoke run
#   benchmarks/gpu_check.sh --smoke            # tiny config anywhere
#   benchmarks/gpu_check.sh --batch 128 --steps 5   # any option of benchmarks/gpu_check.py
#
# Output is also written to $GPU_CHECK_LOG (default: gpu_check_<host>_<UTC time>.log in the repo root).
# Python: $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
log="${GPU_CHECK_LOG:-gpu_check_$(hostname -s)_$(date -u +%Y%m%dT%H%M%SZ).log}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  # Overlap collectives with compute, and let JAX use most of the GPU (default preallocation is 75 %).
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

echo "gpu_check: $("$py" --version 2>&1), XLA_FLAGS='${XLA_FLAGS:-}', log $log" | tee "$log"
"$py" benchmarks/gpu_check.py "$@" 2>&1 | tee -a "$log"
