"""Multi-host start-up: `jax.distributed.initialize` must run before any other JAX call."""
from __future__ import annotations

import os


def maybe_initialize_distributed(dist_cfg) -> bool:
    """Initialise the JAX distributed runtime when `config.distributed.enabled` (returns whether it did).

    TPU pods auto-detect everything; GPU/CPU clusters give the coordinator address, process count and id in the
    config or in JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID.
    """
    if not dist_cfg.enabled:
        return False
    import jax

    kwargs = {}
    address = dist_cfg.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    if address:
        kwargs["coordinator_address"] = address
    for key, env in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        value = dist_cfg.get(key)
        if value is None and os.environ.get(env):
            value = int(os.environ[env])
        if value is not None:
            kwargs[key] = int(value)
    jax.distributed.initialize(**kwargs)
    return True
