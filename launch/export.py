"""Export a training run's actor, at any checkpoint step, as an HF directory (config.json + model.safetensors +
tokenizer) for transformers, vLLM, `launch/eval.py` or `launch/serve.py`.

    python launch/export.py --workdir=runs/demo                    # the newest readable step
    python launch/export.py --workdir=runs/llama3b --step=100 --out=/models/router-step100 --dtype=bfloat16

Works while the run goes on and after it stopped or was pre-empted. Only the actor's arrays are read from the
checkpoint, into host memory: no accelerator is needed. `launch/eval.py --policy=runs/demo` (or
`runs/demo/ckpt/100`) evaluates a step without exporting it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's work directory (the --workdir train.py was given).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the newest readable one).")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: <workdir>/hf_export-<step>).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Dtype of the written weights.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required: the directory train.py wrote ckpt/ into")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the export runs on the host; it needs no accelerator
    from rr1_jax.checkpoint import CheckpointError
    from rr1_jax.model.hf_config import WeightsError
    from rr1_jax.run_export import export_run

    try:
        step, out = export_run(_WORKDIR.value, _OUT.value, _STEP.value, _DTYPE.value)
    except (CheckpointError, WeightsError, OSError) as err:
        sys.exit(f"export: {err}")
    print(f"exported step {step} of {_WORKDIR.value} to {out}")


if __name__ == "__main__":
    app.run(main)
