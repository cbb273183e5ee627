"""Test set-up: CPU only, offline, f32; mesh tests get 8 fake devices (see Makefile)."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

MESH_DEVICES = 8


def pytest_configure(config):
    # A plain `pytest` run (no -m "not mesh") includes mesh tests, so it needs the fake devices before
    # jax is first imported. `make test` runs the two groups in separate processes instead.
    flags = os.environ.get("XLA_FLAGS", "")
    if "not mesh" not in (config.option.markexpr or "") and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={MESH_DEVICES}".strip()


@pytest.fixture
def mesh_devices():
    """The 8 fake CPU devices a mesh test needs; fails loudly (never skips) when they are missing."""
    import jax

    devices = jax.devices()
    assert len(devices) >= MESH_DEVICES, (
        f"mesh tests need {MESH_DEVICES} devices, found {len(devices)}: run them with "
        f"XLA_FLAGS=--xla_force_host_platform_device_count={MESH_DEVICES} (make test does)")
    return devices[:MESH_DEVICES]
