"""XLA_FLAGS for a child process or a single-device run: the parent's flags (e.g. `make test`'s optimisation
level) with the fake CPU device count replaced, or dropped when `devices` is None."""
import os
from typing import Optional


def xla_flags(devices: Optional[int] = None) -> str:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)
