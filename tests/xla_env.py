"""XLA_FLAGS for a single-device child process or kernel: the parent's flags (e.g. `make test`'s optimisation
level) without the mesh tests' fake CPU device count."""
import os


def xla_flags() -> str:
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f)
