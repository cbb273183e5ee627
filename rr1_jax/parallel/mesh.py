"""Device mesh `(data, fsdp, tensor)` and the logical-axis rules that map parameter/activation names onto it.

Parameters carry logical axis names (`embed`, `heads`, `mlp`, ...; see `rr1_jax.model.transformer`). Two rule
sets exist: TRAIN shards weights over `fsdp` (ZeRO-3 style) and `tensor` (Megatron style); DECODE drops the
`fsdp` axis from weights so a decode step never all-gathers a layer. A dimension whose size the mesh axes do
not divide is replicated instead of failing (e.g. 3 KV heads on a 4-way tensor axis).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence, Union

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
MeshAxes = Union[None, str, tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical axis name -> mesh axis (or axes, or None = replicated). Unknown names are replicated."""

    mapping: Mapping[str, MeshAxes]

    def mesh_axes(self, name: Optional[str]) -> tuple[str, ...]:
        if name is None:
            return ()
        axes = self.mapping.get(name)
        if axes is None:
            return ()
        return (axes,) if isinstance(axes, str) else tuple(axes)

    def spec(self, logical_axes: Sequence[Optional[str]], shape: Optional[Sequence[int]] = None,
             mesh: Optional[Mesh] = None) -> PartitionSpec:
        """PartitionSpec for one array. With `shape` and `mesh`, axes that do not divide a dim are dropped."""
        used: dict[str, str] = {}
        entries = []
        for dim, name in enumerate(logical_axes):
            axes = tuple(a for a in self.mesh_axes(name) if mesh is None or mesh.shape.get(a, 1) > 1)
            for axis in axes:
                if axis in used:
                    raise ValueError(f"sharding rule collision: logical axes {used[axis]!r} and {name!r} of "
                                     f"{tuple(logical_axes)} both map to mesh axis {axis!r}; change the rules")
                used[axis] = name
            if shape is not None and mesh is not None and axes:
                if shape[dim] % math.prod(mesh.shape[a] for a in axes):
                    axes = ()  # not divisible: replicate this dimension
            entries.append(None if not axes else axes[0] if len(axes) == 1 else axes)
        while entries and entries[-1] is None:
            entries.pop()
        return PartitionSpec(*entries)


TRAIN_RULES = ShardingRules({
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "layers": None,
    "head_dim": None,
    "norm": None,
    "length": None,
})

DECODE_RULES = ShardingRules({**TRAIN_RULES.mapping, "embed": None})


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Optional[Sequence] = None) -> Mesh:
    """A `(data, fsdp, tensor)` mesh (Auto axis types). One size may be -1: it takes the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh sizes {dict(zip(MESH_AXES, sizes))}: at most one may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} does not divide {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                         f"{len(devices)} available; set config.mesh sizes whose product is {len(devices)}")
    return Mesh(np.asarray(devices, dtype=object).reshape(sizes), MESH_AXES)


def mesh_from_config(mesh_config, devices: Optional[Sequence] = None) -> Mesh:
    """Mesh from a `config.mesh` section with `data`, `fsdp`, `tensor` entries."""
    return make_mesh(mesh_config.data, mesh_config.fsdp, mesh_config.tensor, devices)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def param_specs(state: nnx.State, rules: ShardingRules, mesh: Optional[Mesh] = None):
    """A PartitionSpec per parameter of an (abstract or concrete) NNX state, from its `logical_axes`."""
    def spec_of(var):
        axes = var.get_metadata().get("logical_axes")
        if axes is None:
            return PartitionSpec()
        return rules.spec(axes, var.shape, mesh)
    return jax.tree.map(spec_of, state, is_leaf=_is_variable)


def param_shardings(state: nnx.State, rules: ShardingRules, mesh: Mesh):
    """A NamedSharding per parameter (same tree structure as the raw arrays of `state`)."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), param_specs(state, rules, mesh),
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def shard_params(state: nnx.State, rules: ShardingRules, mesh: Mesh) -> nnx.State:
    """Place every parameter with its rule-derived sharding (device-to-device; no host round trip)."""
    return jax.device_put(state, param_shardings(state, rules, mesh))


def batch_sharding(mesh: Mesh, ndim: int, rules: ShardingRules = TRAIN_RULES) -> NamedSharding:
    """Sharding of a `[batch, ...]` array: batch over the data axes, the rest replicated."""
    return NamedSharding(mesh, rules.spec(("batch",) + (None,) * (ndim - 1)))
