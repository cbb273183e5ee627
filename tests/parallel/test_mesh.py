"""Logical-axis rules and the mesh factory (no fake devices needed)."""
import jax
import pytest
from jax.sharding import PartitionSpec as P

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import abstract_model
from rr1_jax.parallel.mesh import DECODE_RULES, TRAIN_RULES, ShardingRules, make_mesh, param_specs
from flax import nnx


def test_rule_collision_is_rejected():
    with pytest.raises(ValueError, match="collision"):
        TRAIN_RULES.spec(("batch", "length", "embed"))  # batch uses fsdp, so does embed
    assert ShardingRules({"a": "tensor"}).spec(("a", None)) == P("tensor")


def test_make_mesh_checks_sizes():
    mesh = make_mesh(1, -1, 1)
    assert mesh.shape["fsdp"] == len(jax.devices())
    with pytest.raises(ValueError, match="needs 3 devices"):
        make_mesh(1, 3, 1, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="at most one may be -1"):
        make_mesh(-1, -1, 1)


def test_param_spec_snapshot_without_mesh():
    """Snapshot of the logical rules per parameter: a rules change shows up as a diff here."""
    _, state = nnx.split(abstract_model(ModelConfig.tiny(qkv_bias=True)))
    train, decode = param_specs(state, TRAIN_RULES), param_specs(state, DECODE_RULES)
    got = {"/".join(str(getattr(k, "key", k)) for k in path): spec
           for path, spec in jax.tree_util.tree_leaves_with_path(train, is_leaf=lambda x: isinstance(x, P))}
    assert got["embed"] == P("tensor", "fsdp")
    assert got["lm_head"] == P("fsdp", "tensor")
    assert got["layers/q_proj"] == P(None, "fsdp", "tensor")
    assert got["layers/o_proj"] == P(None, "tensor", None, "fsdp")
    assert got["layers/down_proj"] == P(None, "tensor", "fsdp")
    assert got["layers/q_bias"] == P(None, "tensor")
    assert got["layers/attn_norm"] == P()
    assert decode["layers"]["q_proj"] == P(None, None, "tensor")
