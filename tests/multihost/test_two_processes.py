"""Multi-host training on one machine: 2 processes x 2 fake CPU devices vs 1 process on 1 device.

Both run configs/tiny.py (2 PPO iterations, global batch 8), with GAE or with GRPO groups of 2 episodes per
prompt (a group's episodes sit on one process; group ids are unique over processes). In the two-process run the
mesh is (data=1, fsdp=4, tensor=1) over both processes' devices; each process loads its data shard, rolls out
its 4 prompts on its own 2 devices against its own simulated-pool server, and the update runs on the global mesh
(gloo collectives). Same data, same sampling key per batch position, so the final actor parameters must match the
single process's (up to float summation order).
"""
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from rr1_jax.run_export import load_run_policy

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_worker.py")
TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, devices: int, log_path: str) -> subprocess.Popen:
    # XLA's default optimisation level, not make test's lowest: the tolerances below are calibrated on it (at the
    # lowest level the GAE run's 99.9th percentile difference was 2.3e-6)
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, WORKER, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(procs: dict, logs: dict) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, proc in procs.items():
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    failed = {n: p for n, p in procs.items() if p.poll() != 0}
    for p in failed.values():
        if p.poll() is None:
            p.kill()
            p.wait()
    if failed:
        report = "\n".join(f"===== {n} (exit {p.returncode}) =====\n{open(logs[n], errors='replace').read()[-6000:]}"
                           for n, p in procs.items())
        pytest.fail(f"{sorted(failed)} failed or timed out after {TIMEOUT_S} s:\n{report}")


# 16 episodes in one mini-batch (its rows are in another order on two processes, which a token-mean ignores),
# scored by their text so that scores differ within a group and the grouping decides the advantages
GRPO = ("--set", "ppo.adv_estimator='grpo'", "--set", "rollout.n_agent=2", "--set", "ppo.mini_batch_size=16",
        "--text-scores")


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize("worker_args", [(), GRPO], ids=["gae", "grpo-groups-of-2"])
def test_two_processes_match_one(tmp_path, worker_args):
    port = _free_port()
    procs, logs = {}, {}
    for pid in range(2):
        logs[f"process {pid}"] = str(tmp_path / f"p{pid}.log")
        procs[f"process {pid}"] = _start(
            [f"--process-id={pid}", "--num-processes=2", f"--port={port}", f"--workdir={tmp_path / 'multi'}",
             f"--out={tmp_path / 'multi'}", *worker_args], 2, logs[f"process {pid}"])
    logs["single"] = str(tmp_path / "single.log")
    procs["single"] = _start([f"--workdir={tmp_path / 'single'}", f"--out={tmp_path / 'single'}", *worker_args], 1,
                             logs["single"])
    _wait(procs, logs)

    single = np.load(tmp_path / "single.0.npz")
    assert int(single["step"]) == 2
    for pid in range(2):
        multi = np.load(tmp_path / f"multi.{pid}.npz")
        assert sorted(multi.files) == sorted(single.files)
        diffs = {k: float(np.max(np.abs(multi[k] - single[k]))) for k in single.files if k != "step"}
        print(f"process {pid}: max |multi - single| over {len(diffs)} actor arrays = {max(diffs.values()):.3g}")
        # Cross-process all-reduces sum in another order (~1e-7 relative). Adam's early updates are ~lr·sign(g),
        # so where a gradient element is ~0 that noise can flip a sign and move that one weight by up to ~2·lr per
        # update (seen: 1.2e-6 and 5.9e-5 on 1 of 8-16K weights, lr 1e-4; on an AVX-512 machine, where XLA sums
        # in yet another order, 11 of k_proj's 4096 weights by 2e-6 to 1.1e-5). A real layout bug (a process's
        # rows missing or duplicated) moves most weights by ~lr, so the test bounds the 99th percentile tightly
        # and single outliers only by what Adam allows (2 iterations x 2·lr).
        for k in diffs:
            delta = np.abs(multi[k] - single[k])
            assert np.quantile(delta, 0.99) <= 1e-6 and delta.max() <= 4e-4, (k, float(delta.max()))
    # same episodes (rewards, routes, token counts) and same losses per iteration; the actor was updated
    rows = {name: [json.loads(x) for x in open(tmp_path / name / "metrics.jsonl")] for name in ("single", "multi")}
    assert [r["step"] for r in rows["multi"]] == [1, 2]
    for one, two in zip(rows["single"], rows["multi"]):
        assert one["actor/updated"] == two["actor/updated"] == 1.0
        keys = ("episode/reward", "episode/em", "episode/routes", "episode/cost", "perf/tokens")
        for key in keys + (() if worker_args else ("critic/vf_loss",)):  # GRPO has no critic
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
        # The actor's loss aggregation across processes (token sums and counts all-reduced per mini-batch), checked
        # on O(1) quantities: the token-mean entropy and the all-reduced gradient's norm. Not pg_loss: it is
        # -mean(A·ratio) with whitened advantages, ~0 by construction, and when a batch's returns are nearly
        # constant (tiny policies fail the format alike) whitening turns summation-order noise into its whole value
        # (seen: -6.0e-4 single vs -3.0e-5 multi, with entropies equal to 1e-7 and grad norms to 6e-6).
        assert two["actor/entropy"] == pytest.approx(one["actor/entropy"], rel=1e-5)
        assert two["actor/grad_norm"] == pytest.approx(one["actor/grad_norm"], rel=1e-4, abs=1e-9)
    assert sorted(os.listdir(tmp_path / "multi" / "ckpt"))[-1] == "2"  # written collectively by both processes
    # one process (this one, one device) reads the actor the two processes saved, as launch/export.py does
    exported = load_run_policy(str(tmp_path / "multi"))
    saved = np.load(tmp_path / "multi.0.npz")
    params = nnx.to_pure_dict(nnx.split(exported.model, nnx.Param)[1])
    flat = {jax.tree_util.keystr(path): x for path, x in jax.tree_util.tree_leaves_with_path(params)}
    assert exported.step == 2 and sorted(flat) == sorted(k for k in saved.files if k != "step")
    for key, value in flat.items():
        np.testing.assert_array_equal(np.asarray(value), saved[key])
