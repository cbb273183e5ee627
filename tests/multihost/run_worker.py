"""One process of the multi-host test: configs/tiny.py (2 PPO iterations) through launch/train.py's two calls.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/multihost/run_worker.py \\
        --process-id=0 --num-processes=2 --port=12345 --workdir=/tmp/run --out=/tmp/params

With --num-processes > 1 it joins a JAX distributed runtime with a coordinator on 127.0.0.1:<port> (CPU
cross-process collectives: gloo, jax 0.10's default); the mesh then spans every process's devices. Each process
writes the final actor parameters (gathered from the global arrays) to <out>.<process-id>.npz.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from rr1_jax.config_overrides import apply_overrides, parse_override  # noqa: E402  (imports no JAX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set sft.steps=2 (value parsed as a Python literal)")
    parser.add_argument("--text-scores", action="store_true",
                        help="score each episode by a hash of its response text (in [0, 1)) instead of the reward: "
                             "an untrained policy scores every episode alike, which would hide how episodes are "
                             "grouped and normalised")
    args = parser.parse_args()
    start = time.perf_counter()

    from configs import tiny

    config = tiny.get_config()
    apply_overrides(config, args.set, where="configs/tiny.py")
    if args.num_processes > 1:
        config.distributed.update(dict(enabled=True, coordinator_address=f"127.0.0.1:{args.port}",
                                       num_processes=args.num_processes, process_id=args.process_id))
    from rr1_jax.parallel.distributed import maybe_initialize_distributed

    maybe_initialize_distributed(config.distributed)  # before any other JAX call, as launch/train.py does
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from rr1_jax.rl import loop

    if args.text_scores:
        import zlib

        real_scores = loop.score_episodes

        def text_scores(records, episodes, *rest, **kwargs):
            scores, metrics = real_scores(records, episodes, *rest, **kwargs)
            for i, episode in enumerate(episodes[:len(records)]):
                scores[i] = zlib.crc32(episode.response_text.encode()) % 1000 / 1000
            return scores, metrics

        loop.score_episodes = text_scores
    summary = loop.train(config, args.workdir)
    actor = summary["state"].actor
    actor = multihost_utils.process_allgather(actor, tiled=True) if jax.process_count() > 1 else jax.device_get(actor)
    flat = {jax.tree_util.keystr(path): np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(actor)}
    np.savez(f"{args.out}.{jax.process_index()}.npz", step=int(jax.device_get(summary["state"].step)), **flat)
    print(f"process {jax.process_index()}/{jax.process_count()}: {len(jax.devices())} devices, "
          f"{len(flat)} actor arrays saved, {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
