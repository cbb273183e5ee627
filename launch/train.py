"""Train a Router-R1 policy with PPO.

    python launch/train.py --config=configs/demo.py
    python launch/train.py --config=configs/llama3b.py --config.model.path=/models/Llama-3.2-3B-Instruct \\
        --workdir=runs/llama3b --config.reward.alpha=0.6

Resumes automatically from the newest checkpoint in the work directory; SIGTERM (pre-emption) saves one at the
end of the current iteration and exits with status 143. Multi-host: set
`--config.distributed.enabled=true` (TPU pods need nothing else; GPU/CPU clusters pass the coordinator address,
process count and id, or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID env vars). Every
process runs this same command; each rolls out data.batch_size / processes prompts on its own devices and makes
their candidate calls, the PPO update runs on the mesh over all processes (rr1_jax/parallel/multihost.py).
"""
import os
import signal
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rr1_jax.config_overrides import check_config_flags  # noqa: E402

_DEFAULT_CONFIG = os.path.join(_REPO, "configs", "demo.py")  # whatever the working directory
if __name__ == "__main__":  # before absl, which applies --config.* overrides as it defines the flag
    check_config_flags(sys.argv, _DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and exports (default: config.workdir).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config = _CONFIG.value
    from rr1_jax.parallel.distributed import maybe_initialize_distributed

    maybe_initialize_distributed(config.distributed)  # before any other JAX call
    from rr1_jax.checkpoint import CheckpointError
    from rr1_jax.data.qa import DataError
    from rr1_jax.model.hf_config import WeightsError
    from rr1_jax.rl.loop import train
    from rr1_jax.rl.summary import print_summary
    from rr1_jax.rollout.pool_setup import PoolSetupError

    try:
        summary = train(config, _WORKDIR.value)
    except (DataError, WeightsError, CheckpointError, PoolSetupError) as e:
        sys.exit(f"error: {e}")  # bad input: the message names the problem and the fix
    import jax

    if summary["preempted"]:  # SIGTERM: checkpoint saved; the conventional exit status tells the scheduler
        logging.warning("stopped by a signal after iteration %d, checkpoint saved: rerun the same command to resume",
                        int(jax.device_get(summary["state"].step)))
        return 128 + signal.SIGTERM
    if jax.process_index() == 0:  # multi-host: validation, metrics and export live on process 0
        print_summary(summary, config)


if __name__ == "__main__":
    app.run(main)
