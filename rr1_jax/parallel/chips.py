"""Published per-chip figures of the accelerators rr1_jax targets: HBM capacity, HBM bandwidth, dense bf16 peak.

Used by the memory model (`rr1_jax.parallel.memory`: does a setup fit?) and by `benchmarks/gpu_check.py`
(decode tokens/s against the HBM-bandwidth bound, PPO-update MFU against the bf16 peak). Figures are the
vendors' data-sheet numbers for one chip (dense, no sparsity); a TPU "chip" is what JAX lists as one device
(a v4 chip has two TensorCores that JAX shows as one device).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

GB = 10 ** 9
GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class ChipSpec:
    """One accelerator chip: `name`, HBM bytes, HBM bytes/s and dense bf16 FLOP/s."""

    name: str
    hbm_bytes: float
    hbm_bandwidth: float  # bytes/s
    bf16_flops: float  # FLOP/s, dense


H200 = ChipSpec("H200", 141 * GB, 4800 * GB, 989e12)
GH200 = ChipSpec("GH200", 96 * GB, 4000 * GB, 989e12)  # the 96 GB HBM3 part (the 144 GB one is under-counted)
H100_SXM = ChipSpec("H100 SXM", 80 * GB, 3350 * GB, 989e12)
H100_PCIE = ChipSpec("H100 PCIe", 80 * GB, 2000 * GB, 756e12)
H100_NVL = ChipSpec("H100 NVL", 94 * GB, 3900 * GB, 835e12)
A100_80GB_SXM = ChipSpec("A100 80GB SXM", 80 * GB, 2039 * GB, 312e12)
A100_80GB_PCIE = ChipSpec("A100 80GB PCIe", 80 * GB, 1935 * GB, 312e12)
A100_40GB = ChipSpec("A100 40GB", 40 * GB, 1555 * GB, 312e12)
L40S = ChipSpec("L40S", 48 * GB, 864 * GB, 362e12)
L4 = ChipSpec("L4", 24 * GB, 300 * GB, 121e12)
TPU_V4 = ChipSpec("TPU v4", 32 * GIB, 1200 * GB, 275e12)
TPU_V5E = ChipSpec("TPU v5e", 16 * GIB, 819 * GB, 197e12)
TPU_V5P = ChipSpec("TPU v5p", 95 * GIB, 2765 * GB, 459e12)
TPU_V6E = ChipSpec("TPU v6e", 32 * GIB, 1640 * GB, 918e12)

# device_kind substrings (lower case) -> spec; the first match wins, so specific names come before generic ones.
_BY_DEVICE_KIND: tuple[tuple[str, ChipSpec], ...] = (
    ("gh200", GH200), ("h200", H200), ("h100 pcie", H100_PCIE), ("h100 nvl", H100_NVL), ("h100", H100_SXM),
    ("a100 80gb pcie", A100_80GB_PCIE), ("a100-sxm4-80gb", A100_80GB_SXM), ("a100", A100_40GB),
    ("l40s", L40S), ("l4", L4),
    ("tpu v4", TPU_V4), ("tpu v5 lite", TPU_V5E), ("tpu v5e", TPU_V5E), ("tpu v5p", TPU_V5P), ("tpu v5", TPU_V5P),
    ("tpu v6 lite", TPU_V6E), ("tpu v6e", TPU_V6E),
)

# Short names used by the memory table and the docs.
CHIPS: dict[str, ChipSpec] = {"v4": TPU_V4, "v5e": TPU_V5E, "v5p": TPU_V5P, "v6e": TPU_V6E,
                              "a100-80gb": A100_80GB_SXM, "h100": H100_SXM, "h200": H200}


def chip_spec(device_kind: str) -> Optional[ChipSpec]:
    """The spec of a JAX `device.device_kind` (e.g. "NVIDIA H100 80GB HBM3", "TPU v5 lite"), None if unknown."""
    kind = device_kind.lower()
    for key, spec in _BY_DEVICE_KIND:
        if key in kind:
            return spec
    return None
