"""The demo (`make demo`): a tiny router trained on the synthetic routing task, on a laptop CPU.

`configs/demo.py`: copy warm-up, SFT warm start on demonstrations that route to a uniformly random candidate (the
format is taught, the choice is not), then PPO against the simulated candidate pool (an in-process
OpenAI-compatible server). Prints the before/after table (EM, reward, cost, routes; which candidate each question
domain is routed to), the plots written to the work directory, wall time and peak memory. Extra arguments are
config overrides, e.g. `python launch/train_demo.py --config.train.total_steps=10`.
"""
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from absl import app, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rr1_jax.config_overrides import check_config_flags  # noqa: E402
from rr1_jax.metrics import peak_rss_gb  # noqa: E402

_DEFAULT_CONFIG = os.path.join(_REPO, "configs", "demo.py")  # whatever the working directory
if __name__ == "__main__":  # before absl, which applies --config.* overrides as it defines the flag
    check_config_flags(sys.argv, _DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Demo config.", lock_config=True)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    from rr1_jax.rl.loop import train
    from rr1_jax.rl.summary import print_summary

    t0 = time.perf_counter()
    summary = train(config)
    print_summary(summary, config)
    if summary["start_step"] >= config.train.total_steps:  # resumed a finished run: nothing was trained
        print(f"\n{config.workdir} already holds a finished run ({summary['start_step']} PPO iterations; metrics, "
              f"plots and export are there). To train the demo again: rm -rf {config.workdir}")
    plots = os.path.join(config.workdir, "plots")
    if os.path.isdir(plots):
        print(f"\nplots: {', '.join(sorted(os.path.join(plots, p) for p in os.listdir(plots)))}")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s, peak RSS "
          f"{peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    app.run(main)
