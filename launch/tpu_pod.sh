#!/usr/bin/env bash
# Run rr1_jax PPO training on a Cloud TPU VM slice (one host or a multi-host pod) with gcloud.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh COMMAND [extra launch/train.py flags]

Commands
  create   create the TPU VM slice ($TPU_NAME, $ACCELERATOR, $ZONE)
  setup    copy this checkout (tracked files) to every worker, make a venv there and install the pinned
           requirements + jax[tpu] (same version as requirements.txt) from the libtpu index
  stage    copy a local directory (model weights, QA data) to every worker, into $REMOTE_DIR/<its name>:
           `stage ./data` serves the 3B configs' relative data/<benchmark>/<split>.jsonl, `stage
           /models/Qwen2.5-3B-Instruct` then `train --config.model.path=Qwen2.5-3B-Instruct`
  train    start launch/train.py --config=$CONFIG with the recommended mesh on all workers (in the
           background); API keys named in $API_KEY_VARS travel in a private file, never on a command line
  logs     show the last $LOG_LINES lines of every worker's log; `logs fetch` copies them to logs/$TPU_NAME/
  stop     stop the training process on all workers
  ssh      open a shell on worker $WORKER (default 0)
  mesh     print the mesh / remat flags `train` adds for $ACCELERATOR and $CONFIG (no gcloud needed)
  delete   delete the slice

Environment (defaults in brackets)
  TPU_NAME [rr1-jax]   ZONE [us-central2-b]   PROJECT [gcloud default]   SPOT [0; 1 = spot VM]
  ACCELERATOR [v4-8]: v4-8 | v4-32 | v5litepod-8 | v5litepod-16 | v5p-8 (others: all chips on fsdp)
  RUNTIME_VERSION [per accelerator]   CONFIG [configs/llama3b.py]   REMOTE_DIR [rr1_jax]
  API_KEY_VARS ["NVIDIA_API_KEY OPENAI_API_KEY WANDB_API_KEY"]: forwarded when set locally (names only
  are printed)   LOG_LINES [40]   DRY_RUN [0; 1 = print the gcloud commands instead of running them]

Recommended meshes (per-chip memory from `python -m rr1_jax.parallel.memory_plan --plan`, f32 master weights,
Router-R1 batch 64 / mini-batch 32; see docs/scaling.md for the numbers and the row-length caveats; `mesh`
prints the flags, which also set rollout waves, decoding from the training shards and the micro-batch):
  v4-8  (4 chips, 32 GiB)       llama3b: fsdp=1 tensor=4 remat=full    qwen3b: fsdp=2 tensor=2 remat=full
  v4-32 (16 chips, 4 hosts)     llama3b: fsdp=8 tensor=2 dots_no_batch qwen3b: fsdp=16 dots_no_batch
  v5litepod-8 (v5e, 8 x 16 GiB) llama3b: fsdp=1 tensor=8 remat=full    qwen3b: fsdp=8 remat=full
  v5litepod-16 (v5e, 16 chips)  llama3b: fsdp=4 tensor=4 dots_no_batch qwen3b: fsdp=16 remat=full
  v5p-8 (4 chips, 95 GiB)       llama3b: fsdp=1 tensor=4 dots_no_batch qwen3b: fsdp=4 dots_no_batch

Example
  export TPU_NAME=rr1 ZONE=us-central2-b ACCELERATOR=v4-32 CONFIG=configs/qwen3b.py NVIDIA_API_KEY=...
  launch/tpu_pod.sh create && launch/tpu_pod.sh setup && launch/tpu_pod.sh stage ./data
  launch/tpu_pod.sh stage /models/Qwen2.5-3B-Instruct
  launch/tpu_pod.sh train --config.model.path=Qwen2.5-3B-Instruct --config.seed=1
  launch/tpu_pod.sh logs; launch/tpu_pod.sh logs fetch; launch/tpu_pod.sh delete
EOF
}

command="${1:-help}"
case "$command" in -h|--help|help) usage; exit 0 ;; esac
shift

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TPU_NAME="${TPU_NAME:-rr1-jax}"
ZONE="${ZONE:-us-central2-b}"
PROJECT="${PROJECT:-}"
SPOT="${SPOT:-0}"
ACCELERATOR="${ACCELERATOR:-v4-8}"
CONFIG="${CONFIG:-configs/llama3b.py}"
REMOTE_DIR="${REMOTE_DIR:-rr1_jax}"
API_KEY_VARS="${API_KEY_VARS:-NVIDIA_API_KEY OPENAI_API_KEY WANDB_API_KEY}"
LOG_LINES="${LOG_LINES:-40}"
DRY_RUN="${DRY_RUN:-0}"
LIBTPU_INDEX="https://storage.googleapis.com/jax-releases/libtpu_releases.html"

default_runtime() {
  case "$1" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) echo "tpu-ubuntu2204-base" ;;
  esac
}
RUNTIME_VERSION="${RUNTIME_VERSION:-$(default_runtime "$ACCELERATOR")}"

# Mesh, remat, rollout-wave and micro-batch flags for launch/train.py: the plans of
# `python -m rr1_jax.parallel.memory_plan --plan` (docs/scaling.md). waves = "slots per wave, decode from the
# training shards, PPO micro-batch"; pods (several hosts) roll out each host's 64 / hosts episodes in one wave.
# response = the trained response tokens the plan has room for (rollout.max_response_tokens; upstream's 4096).
mesh_flags() {
  local model
  model="$(basename "$CONFIG" .py)"
  local mesh remat waves response=4096
  case "$ACCELERATOR:$model" in
    v4-8:llama3b) mesh="1 1 4"; remat=full; waves="8 true 1"; response=1024 ;;
    v4-8:qwen3b) mesh="1 2 2"; remat=full; waves="8 true 2"; response=2048 ;;
    v4-32:llama3b) mesh="1 8 2"; remat=dots_no_batch; waves="0 false 8" ;;
    v4-32:qwen3b) mesh="1 16 1"; remat=dots_no_batch; waves="0 false 16" ;;
    v5litepod-8:llama3b|v5e-8:llama3b) mesh="1 1 8"; remat=full; waves="8 true 1"; response=1024 ;;
    v5litepod-8:qwen3b|v5e-8:qwen3b) mesh="1 8 1"; remat=full; waves="8 true 8" ;;
    v5litepod-16:llama3b|v5e-16:llama3b) mesh="1 4 4"; remat=dots_no_batch; waves="0 false 8" ;;
    v5litepod-16:qwen3b|v5e-16:qwen3b) mesh="1 16 1"; remat=full; waves="0 false 16" ;;
    v5p-8:llama3b) mesh="1 1 4"; remat=dots_no_batch; waves="0 false 8" ;;
    v5p-8:qwen3b) mesh="1 4 1"; remat=dots_no_batch; waves="0 false 8" ;;
    *) mesh="1 -1 1"; remat=full; waves="" ;;  # every chip on fsdp
  esac
  read -r data fsdp tensor <<<"$mesh"
  local out="--config.mesh.data=$data --config.mesh.fsdp=$fsdp --config.mesh.tensor=$tensor --config.model.remat=$remat"
  if [[ -n "$waves" ]]; then
    read -r slots shards micro <<<"$waves"
    out+=" --config.rollout.slots_per_wave=$slots --config.rollout.decode_from_train_shards=$shards"
    out+=" --config.ppo.micro_batch_size=$micro"
  fi
  if [[ "$response" != 4096 ]]; then
    out+=" --config.rollout.max_response_tokens=$response"
  fi
  echo "$out"
}

jax_version() {
  sed -n 's/^jax==\([0-9.]*\).*/\1/p' requirements.txt
}

run() {  # run (or, with DRY_RUN=1, print) one command
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

tpu() {  # gcloud compute tpus tpu-vm SUBCOMMAND ... with zone/project
  run gcloud compute tpus tpu-vm "$@" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"}
}

on_all_workers() {
  tpu ssh "$TPU_NAME" --worker=all --command="$1"
}

work="$(mktemp -d)"  # local scratch (archive, secrets file); removed on exit
trap 'rm -rf "$work"' EXIT

case "$command" in
  mesh)
    mesh_flags
    ;;
  create)
    spot=()
    [[ "$SPOT" == 1 ]] && spot=(--spot)
    tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$RUNTIME_VERSION" "${spot[@]}"
    ;;
  setup)
    version="$(jax_version)"
    [[ -n "$version" ]] || { echo "no 'jax==' pin in requirements.txt" >&2; exit 1; }
    git ls-files -z | tar --null -czf "$work/rr1_jax.tgz" -T -
    tpu scp "$work/rr1_jax.tgz" "$TPU_NAME:rr1_jax.tgz" --worker=all
    on_all_workers "set -e; mkdir -p $REMOTE_DIR && tar -xzf rr1_jax.tgz -C $REMOTE_DIR && rm rr1_jax.tgz && \
cd $REMOTE_DIR && python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip && \
.venv/bin/pip install -q -r requirements.txt && \
.venv/bin/pip install -q 'jax[tpu]==$version' -f $LIBTPU_INDEX && .venv/bin/pip install -q --no-deps -e . && \
.venv/bin/python -c 'import jax; print(jax.process_index(), jax.device_count(), jax.devices()[0].device_kind)'"
    ;;
  stage)
    [[ $# -eq 1 && -d "$1" ]] || { echo "usage: launch/tpu_pod.sh stage LOCAL_DIRECTORY (got: $*)" >&2; exit 2; }
    name="$(basename "$(cd "$1" && pwd)")"
    on_all_workers "mkdir -p $REMOTE_DIR"
    tpu scp --recurse "$1" "$TPU_NAME:$REMOTE_DIR/" --worker=all  # into the directory: a second stage overwrites
    echo "staged $1 as $REMOTE_DIR/$name on every worker (train runs in $REMOTE_DIR: refer to it as $name)"
    ;;
  train)
    secrets="$work/secrets.env"
    (umask 077; : >"$secrets")
    forwarded=()
    for name in $API_KEY_VARS; do
      if [[ -n "${!name:-}" ]]; then
        printf 'export %s=%q\n' "$name" "${!name}" >>"$secrets"
        forwarded+=("$name")
      fi
    done
    echo "forwarding API keys: ${forwarded[*]:-none} (values are not shown)"
    tpu scp "$secrets" "$TPU_NAME:$REMOTE_DIR/.secrets.env" --worker=all
    flags="$(mesh_flags)"
    extra=""
    [[ $# -gt 0 ]] && extra="$(printf '%q ' "$@")"
    on_all_workers "cd $REMOTE_DIR && chmod 600 .secrets.env && . ./.secrets.env && rm -f .secrets.env && \
nohup .venv/bin/python launch/train.py --config=$CONFIG $flags $extra >train.log 2>&1 </dev/null & \
echo \$! >train.pid; echo started on \$(hostname)"
    ;;
  logs)
    if [[ "${1:-}" == fetch ]]; then
      mkdir -p "logs/$TPU_NAME"
      workers=1
      if [[ "$DRY_RUN" != 1 ]]; then
        workers="$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} \
          --format='value(networkEndpoints.len())')"
      fi
      for ((i = 0; i < ${workers:-1}; i++)); do
        tpu scp "$TPU_NAME:$REMOTE_DIR/train.log" "logs/$TPU_NAME/worker$i.log" --worker="$i"
      done
    else
      on_all_workers "echo == \$(hostname); tail -n $LOG_LINES $REMOTE_DIR/train.log"
    fi
    ;;
  stop)
    on_all_workers "cd $REMOTE_DIR && if test -f train.pid; then kill \$(cat train.pid) || true; rm -f train.pid; fi"
    ;;
  ssh)
    tpu ssh "$TPU_NAME" --worker="${WORKER:-0}"
    ;;
  delete)
    tpu delete "$TPU_NAME" --quiet
    ;;
  *)
    echo "unknown command '$command'" >&2
    usage >&2
    exit 2
    ;;
esac
