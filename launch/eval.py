"""Evaluate router policies and the paper's baselines; write report.json, report.md and pareto.png.

    python launch/eval.py --policy=tiny --dataset=synthetic --out=/tmp/eval
    python launch/eval.py --policy=ckpt_a0,ckpt_a6,ckpt_a9 --baselines=direct,single,oracle --out=/tmp/sweep
    python launch/eval.py --policy=runs/demo,runs/demo/ckpt/10 --out=/tmp/steps   # a run's newest step, step 10
    python launch/eval.py --dataset=nq_test.jsonl --config.data_source=nq --config.pool.kind=router_r1 ...

Flags `--policy`, `--dataset`, `--baselines`, `--out` override the matching config fields; every other field is
set with `--config.<name>=...` (configs/eval_synthetic.py documents them). For the synthetic task the simulated
candidate pool is started here; real pools read their API keys from the environment variables they name.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(_HERE), "configs", "eval_synthetic.py"), "evaluation config file")
_POLICY = flags.DEFINE_string("policy", None, "comma-separated policies: HF dir, .gguf, bundled:smollm2, tiny, or a "
                              "training run's workdir (its newest step) or <workdir>/ckpt/<step>")
_DATASET = flags.DEFINE_string("dataset", None, "'synthetic' or a .jsonl/.parquet question file")
_BASELINES = flags.DEFINE_string("baselines", None, "comma list of direct,cot,prompt_llm,single,oracle,knn ('' = none)")
_OUT = flags.DEFINE_string("out", None, "output directory")


def evaluate_and_write(config) -> dict:
    """Runs the evaluation the config describes and writes its outputs under `config.out`; returns their paths."""
    from rr1_jax.eval.pipeline import compare_points, run_evaluation, write_outputs

    compare = [p.strip() for p in config.compare_reports.split(",") if p.strip()]
    compare_points(compare)  # fail on a bad path before the evaluation, not after it
    report = run_evaluation(config)
    return write_outputs(report, config.out, compare)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    for flag, field in ((_POLICY, "policy"), (_DATASET, "dataset"), (_BASELINES, "baselines"), (_OUT, "out")):
        if flag.value is not None:
            config[field] = flag.value
    from rr1_jax.checkpoint import CheckpointError

    try:
        paths = evaluate_and_write(config)
    except (ValueError, OSError, CheckpointError) as err:  # user errors (flags, files, keys, runs): one clear message
        sys.exit(f"eval: {err}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    with open(paths["markdown"]) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
