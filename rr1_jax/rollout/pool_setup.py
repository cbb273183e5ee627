"""The candidate pool a run talks to, from a `config.pool` section (shared by training and evaluation).

"simulated" starts the OpenAI-compatible server of simulated candidates for the synthetic task on 127.0.0.1
(stopped when the caller's ExitStack closes); "router_r1" is upstream's six-model pool (API keys from the env
vars each candidate names); a path to a JSON file gives a custom pool (a list of candidate dicts).
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Optional

from rr1_jax.data.synthetic import SyntheticTask
from rr1_jax.rollout.candidates import ROUTER_R1_POOL, ROUTER_R1_TRAIN_NAMES, CandidatePool
from rr1_jax.rollout.pool import PoolConfig
from rr1_jax.rollout.simulated_pool import SimulatedPoolConfig, SimulatedPoolServer, simulated_candidate_pool


class PoolSetupError(ValueError):
    """The pool a config names cannot be used as set up (e.g. an API key is not exported); says how to fix it."""


def open_pool(pool_cfg, task: Optional[SyntheticTask],
              stack: contextlib.ExitStack) -> tuple[CandidatePool, PoolConfig]:
    """(candidate pool, client settings); a simulated server is entered into `stack`. A remote pool's API keys
    are checked here, before any weights are loaded, rather than at the first rollout."""
    cache = pool_cfg.cache_path or None
    if pool_cfg.kind == "simulated":
        if task is None:
            raise ValueError("pool.kind='simulated' only knows the synthetic task; for QA files use "
                             "pool.kind='router_r1' or the path of a JSON file of candidates")
        server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(seed=pool_cfg.simulated_seed,
                                                                            latency_scale=pool_cfg.latency_scale))
        url = stack.enter_context(server)
        return simulated_candidate_pool(url), PoolConfig(require_keys=False, cache_path=cache,
                                                         max_concurrency=pool_cfg.max_concurrency)
    if pool_cfg.kind == "router_r1":
        pool = CandidatePool(ROUTER_R1_POOL.resolve(n, "exact") for n in ROUTER_R1_TRAIN_NAMES)
    elif str(pool_cfg.kind).endswith(".json") and os.path.isfile(pool_cfg.kind):
        with open(pool_cfg.kind) as f:
            pool = CandidatePool.from_config(json.load(f))
    else:
        raise ValueError(f"pool.kind={pool_cfg.kind!r}: use 'simulated', 'router_r1' or the path of a JSON file "
                         f"with a list of candidate dicts")
    missing = pool.missing_key_vars()
    if missing:
        raise PoolSetupError(f"pool.kind={pool_cfg.kind!r}: the API key variable(s) {', '.join(missing)} are not set; "
                             f"export them (every rollout calls these candidates), or point --config.pool.kind at a "
                             f"JSON file of candidates whose api_key_env variables are set")
    return pool, PoolConfig(cache_path=cache, max_concurrency=pool_cfg.max_concurrency)
