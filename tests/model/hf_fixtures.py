"""Tiny random HF models saved with `save_pretrained` (the independent torch reference for parity tests)."""
import json
import os

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SHAPES = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}

VARIANTS = {
    "llama_untied": lambda: LlamaForCausalLM(LlamaConfig(**SHAPES, tie_word_embeddings=False, rms_norm_eps=1e-5)),
    "llama3_rope_scaling": lambda: LlamaForCausalLM(LlamaConfig(**SHAPES, tie_word_embeddings=False,
                                                                 rope_parameters=dict(LLAMA3_ROPE))),
    "qwen2_tied_bias": lambda: Qwen2ForCausalLM(Qwen2Config(**SHAPES, tie_word_embeddings=True,
                                                             rope_parameters={"rope_type": "default",
                                                                              "rope_theta": 1e6})),
}


def to_v4_layout(model_dir: str) -> None:
    """Rewrite a v5 config.json (`rope_parameters`, `dtype`) in the v4 layout (`rope_theta`, `rope_scaling`)."""
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        raw = json.load(f)
    rope = raw.pop("rope_parameters")
    raw["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        raw["rope_scaling"] = rope
    raw["torch_dtype"] = raw.pop("dtype", "float32")
    with open(path, "w") as f:
        json.dump(raw, f)


def make_hf_model(variant: str, out_dir: str, layout: str = "v5", seed: int = 0, dtype=torch.float32, **save_kw):
    torch.manual_seed(seed)
    model = VARIANTS[variant]().eval()
    with torch.no_grad():  # non-trivial norms and biases, so a dropped tensor cannot go unnoticed
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(p + 0.1 * torch.randn_like(p))
    model.to(dtype).save_pretrained(out_dir, **save_kw)
    if layout == "v4":
        to_v4_layout(out_dir)
    return model


def left_padded_batch(vocab: int, seed: int = 0):
    """Two sequences of 12 tokens, the first left-padded by 5: (ids, mask, positions) as numpy int arrays."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(2, 12))
    mask = np.ones((2, 12), np.int64)
    mask[0, :5] = 0
    ids[0, :5] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions


def hf_logits(model, ids, mask, positions) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions))
    return out.logits.float().numpy()
