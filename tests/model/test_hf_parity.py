"""Our decoder vs transformers (torch) on tiny random models saved with save_pretrained."""
import numpy as np
import pytest
import torch

from rr1_jax.model.hf_config import read_hf_config
from rr1_jax.model.transformer import forward
from rr1_jax.model.weights import load_hf_model, save_hf
from tests.model.hf_fixtures import VARIANTS, hf_logits, left_padded_batch, make_hf_model

from flax import nnx


def ours_logits(model, ids, mask, positions) -> np.ndarray:
    return np.asarray(model(ids, positions, mask.astype(bool)))


@pytest.mark.parametrize("layout", ["v5", "v4"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_match_transformers_on_left_padded_batch(tmp_path, variant, layout):
    hf = make_hf_model(variant, str(tmp_path), layout)
    model = load_hf_model(str(tmp_path))
    ids, mask, positions = left_padded_batch(model.config.vocab_size)
    ref = hf_logits(hf, ids, mask, positions)
    ours = ours_logits(model, ids, mask, positions)
    valid = mask.astype(bool)
    assert np.abs(ours[valid] - ref[valid]).max() <= 1e-4


def test_config_layouts_agree(tmp_path):
    make_hf_model("llama3_rope_scaling", str(tmp_path / "v5"), "v5")
    make_hf_model("llama3_rope_scaling", str(tmp_path / "v4"), "v4")
    v5, v4 = read_hf_config(str(tmp_path / "v5")), read_hf_config(str(tmp_path / "v4"))
    assert v5 == v4
    assert v5.rope_scaling is not None and v5.rope_scaling.factor == 8.0 and v5.rope_theta == 500000.0


def test_qwen2_flags(tmp_path):
    make_hf_model("qwen2_tied_bias", str(tmp_path))
    config = read_hf_config(str(tmp_path))
    assert config.qkv_bias and config.tie_embeddings and config.architecture == "qwen2"


def test_bf16_checkpoint_loads(tmp_path):
    hf = make_hf_model("llama_untied", str(tmp_path), dtype=torch.bfloat16)
    model = load_hf_model(str(tmp_path))
    ids, mask, positions = left_padded_batch(model.config.vocab_size)
    ref = hf_logits(hf.float(), ids, mask, positions)  # bf16 weights, f32 compute on both sides
    valid = mask.astype(bool)
    assert np.abs(ours_logits(model, ids, mask, positions)[valid] - ref[valid]).max() <= 1e-4


def test_sharded_safetensors_with_index(tmp_path):
    hf = make_hf_model("qwen2_tied_bias", str(tmp_path), max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model = load_hf_model(str(tmp_path))
    ids, mask, positions = left_padded_batch(model.config.vocab_size)
    valid = mask.astype(bool)
    diff = ours_logits(model, ids, mask, positions)[valid] - hf_logits(hf, ids, mask, positions)[valid]
    assert np.abs(diff).max() <= 1e-4


@pytest.mark.parametrize("variant", ["llama3_rope_scaling", "qwen2_tied_bias"])
def test_export_round_trip_loads_in_transformers(tmp_path, variant):
    make_hf_model(variant, str(tmp_path / "src"))
    model = load_hf_model(str(tmp_path / "src"))
    save_hf(model, str(tmp_path / "out"))
    cls = type(VARIANTS[variant]())
    reloaded = cls.from_pretrained(str(tmp_path / "out"), dtype=torch.float32).eval()
    ids, mask, positions = left_padded_batch(model.config.vocab_size, seed=3)
    valid = mask.astype(bool)
    diff = ours_logits(model, ids, mask, positions)[valid] - hf_logits(reloaded, ids, mask, positions)[valid]
    assert np.abs(diff).max() <= 1e-4
    assert read_hf_config(str(tmp_path / "out")) == model.config


def test_pure_forward_under_jit_matches_module(tmp_path):
    import jax

    make_hf_model("llama_untied", str(tmp_path))
    model = load_hf_model(str(tmp_path))
    graphdef, params = nnx.split(model, nnx.Param)
    ids, mask, positions = left_padded_batch(model.config.vocab_size)
    jitted = jax.jit(forward, static_argnums=0)(graphdef, params, ids, positions, mask.astype(bool))
    np.testing.assert_allclose(np.asarray(jitted), ours_logits(model, ids, mask, positions), atol=1e-5)
