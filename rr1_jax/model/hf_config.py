"""Translate HF `config.json` (transformers v4 and v5 layouts) to and from `ModelConfig`."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from rr1_jax.model.config import ModelConfig, RopeScaling

SUPPORTED = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
_ARCH_TO_TYPE = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


class WeightsError(ValueError):
    """A model directory/file the user pointed at cannot be used (names the file, the problem and the fix)."""


def read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: file not found; point the model path at a Hugging Face model directory "
                           f"containing config.json and *.safetensors")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: not valid JSON ({e}); re-download or re-export the model") from None


def _model_type(raw: dict, path: str) -> str:
    model_type = raw.get("model_type")
    if model_type is None:
        for arch in raw.get("architectures") or ():
            model_type = _ARCH_TO_TYPE.get(arch)
    if model_type not in SUPPORTED:
        found = model_type or raw.get("architectures")
        raise WeightsError(f"{path}: unsupported architecture {found!r}; rr1_jax supports "
                           f"{sorted(SUPPORTED)} (Llama-3.x, SmolLM2, Qwen2/2.5)")
    return model_type


def _rope(raw: dict, path: str) -> tuple[float, RopeScaling | None]:
    """Rope theta and Llama-3 scaling from v5 `rope_parameters` or v4 `rope_theta`/`rope_scaling`."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict):
        theta, scaling = params.get("rope_theta", raw.get("rope_theta", 10000.0)), params
    else:
        theta, scaling = raw.get("rope_theta", 10000.0), raw.get("rope_scaling")
    rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise WeightsError(f"{path}: rope type {rope_type!r} is not supported (only default and llama3)")
    try:
        return float(theta), RopeScaling(float(scaling["factor"]), float(scaling["low_freq_factor"]),
                                         float(scaling["high_freq_factor"]),
                                         int(scaling["original_max_position_embeddings"]))
    except KeyError as e:
        raise WeightsError(f"{path}: llama3 rope scaling lacks {e.args[0]!r}") from None


def config_from_hf(raw: dict, path: str = "config.json", **overrides: Any) -> ModelConfig:
    """ModelConfig from a parsed HF config dict; `overrides` set numerics such as dtype or remat."""
    model_type = _model_type(raw, path)
    if raw.get("mlp_bias"):
        raise WeightsError(f"{path}: mlp_bias=true is not supported")
    if model_type == "llama" and raw.get("attention_bias"):  # HF Llama then also has an o_proj bias
        raise WeightsError(f"{path}: attention_bias=true (q/k/v and o_proj biases) is not supported for llama")
    try:
        hidden, heads = int(raw["hidden_size"]), int(raw["num_attention_heads"])
        theta, scaling = _rope(raw, path)
        eos_ids = _eos_ids(raw.get("eos_token_id"), path)
        fields = dict(
            vocab_size=int(raw["vocab_size"]), hidden_size=hidden, num_layers=int(raw["num_hidden_layers"]),
            num_heads=heads, num_kv_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or hidden // heads), intermediate_size=int(raw["intermediate_size"]),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)), rope_theta=theta, rope_scaling=scaling,
            qkv_bias=model_type == "qwen2",
            tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
            max_position_embeddings=int(raw.get("max_position_embeddings", 8192)), architecture=model_type,
            bos_token_id=raw.get("bos_token_id"), eos_token_ids=eos_ids)
    except KeyError as e:
        raise WeightsError(f"{path}: required field {e.args[0]!r} is missing") from None
    fields.update(overrides)
    return ModelConfig(**fields)


def read_hf_config(model_dir: str, **overrides: Any) -> ModelConfig:
    """config.json's ModelConfig; its EOS ids also take generation_config.json's, where generation stops as in
    vLLM (Qwen2.5-Instruct: `<|im_end|>` in config.json, `<|endoftext|>` too in generation_config.json)."""
    path = os.path.join(model_dir, "config.json")
    config = config_from_hf(read_json(path), path, **overrides)
    generation = os.path.join(model_dir, "generation_config.json")
    if "eos_token_ids" in overrides or not os.path.isfile(generation):
        return config
    extra = _eos_ids(read_json(generation).get("eos_token_id"), generation)
    return dataclasses.replace(config, eos_token_ids=tuple(dict.fromkeys(config.eos_token_ids + extra)))


def _eos_ids(eos: Any, path: str) -> tuple[int, ...]:
    """An HF `eos_token_id` (absent, one id or a list of ids) as a tuple of ints."""
    try:
        return tuple(int(i) for i in eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: eos_token_id {eos!r} is not an id or a list of ids") from None


def config_to_hf(config: ModelConfig, torch_dtype: str = "float32") -> dict:
    """An HF config dict for `config` (v4 key layout, which transformers v4 and v5 both read)."""
    out = {
        "architectures": [SUPPORTED[config.architecture]], "model_type": config.architecture,
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads, "head_dim": config.head_dim,
        "intermediate_size": config.intermediate_size, "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta, "tie_word_embeddings": config.tie_embeddings,
        "max_position_embeddings": config.max_position_embeddings, "hidden_act": "silu",
        "torch_dtype": torch_dtype,
    }
    if config.architecture == "llama":
        if config.qkv_bias:  # HF Llama's attention_bias would add an o_proj bias this model does not have
            raise WeightsError("a llama with q/k/v biases only has no HF equivalent; export it as qwen2")
        out["attention_bias"] = False
        out["mlp_bias"] = False
    if config.rope_scaling is not None:
        s = config.rope_scaling
        out["rope_scaling"] = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                               "high_freq_factor": s.high_freq_factor,
                               "original_max_position_embeddings": s.original_max_position_embeddings}
    if config.bos_token_id is not None:
        out["bos_token_id"] = config.bos_token_id
    if config.eos_token_ids:
        out["eos_token_id"] = list(config.eos_token_ids) if len(config.eos_token_ids) > 1 else config.eos_token_ids[0]
    return out
