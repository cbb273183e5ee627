"""One Flax NNX decoder for Llama-3.x, Qwen2/2.5 and SmolLM2.

Layers are stored stacked (leading `layers` axis) and run with `lax.scan`, so compile time does not grow with
depth. Every parameter carries `logical_axes` metadata that `rr1_jax.parallel.mesh` turns into shardings.
The forward is explicit about positions and masks, and optionally reads/writes a per-slot `KVCache`:

* no cache: causal self-attention inside `tokens`, keys restricted to `token_mask` (left-padded batches) and,
  given `segment_ids`, to the query's own segment (several sequences packed into one row, `rl/packing.py`);
* with a cache: the new tokens are written at each slot's own offset `cache.end[b]` and attend to every valid
  cache entry at or before their own cache index (prefill, one-token decode and observation append alike).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rr1_jax.model.config import ModelConfig

Array = jax.Array
_MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)  # large negative, finite: fully masked rows stay NaN-free


class KVCache(NamedTuple):
    """Per-slot attention cache, allocated once per rollout and donated through every jitted call."""

    k: Array  # [L, B, S, KVH, D]
    v: Array  # [L, B, S, KVH, D]
    valid: Array  # [B, S] bool: cache entry holds a real (non-pad) token
    end: Array  # [B] int32: where the next token of each slot is written

    @classmethod
    def zeros(cls, config: ModelConfig, batch: int, max_len: int, dtype=None) -> "KVCache":
        dtype = jnp.dtype(dtype or config.dtype)
        shape = (config.num_layers, batch, max_len, config.num_kv_heads, config.head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch, max_len), bool),
                   jnp.zeros((batch,), jnp.int32))

    @property
    def max_len(self) -> int:
        return self.k.shape[2]


# ----------------------------------------------------------------------------------------------------------
# building blocks (pure functions over arrays)
# ----------------------------------------------------------------------------------------------------------
def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """RMSNorm computed in f32, cast back to the input dtype before the scale (as HF does)."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return weight.astype(x.dtype) * normed.astype(x.dtype)


def rope_inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """[D/2] inverse frequencies, with Llama-3 frequency-dependent scaling when configured."""
    d = config.head_dim
    # f32 throughout, as the HF reference computes it, so positions in the thousands agree to ~1e-6.
    inv_freq = (1.0 / (np.float32(config.rope_theta) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d))))
    inv_freq = inv_freq.astype(np.float32)
    s = config.rope_scaling
    if s is None:
        return inv_freq.astype(np.float32)
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = ((s.original_max_position_embeddings / wavelen - s.low_freq_factor)
              / (s.high_freq_factor - s.low_freq_factor))
    smoothed = (1 - smooth) * inv_freq / s.factor + smooth * inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)  # long wavelengths: fully scaled
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray) -> Array:
    """Rotate-half RoPE (HF layout: first and second halves of head_dim pair up). x: [B, T, N, D]."""
    angles = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)  # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """Grouped-query attention. q: [B, T, H, D], k/v: [B, S, KVH, D], mask: [B, T, S] -> [B, T, H, D]."""
    b, t, h, d = q.shape
    kvh = k.shape[2]
    q = q.reshape(b, t, kvh, h // kvh, d)  # [B, T, KVH, G, D]
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) / math.sqrt(d)
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)  # [B, KVH, G, T, S]
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
    return out.reshape(b, t, h, d)


def _slot_indices(offsets: Array, t: int) -> tuple[Array, Array]:
    """(slot, cache index) pairs [B, T] where each slot's T new tokens go: offsets[b] + 0..T-1."""
    b = offsets.shape[0]
    return jnp.broadcast_to(jnp.arange(b)[:, None], (b, t)), offsets[:, None] + jnp.arange(t)[None, :]


def _layer(config: ModelConfig, inv_freq, x, p, positions, mask, cache_kv, offsets, layer):
    """One pre-norm decoder layer. x: [B, T, E]; p: this layer's params.

    cache_kv: None, or the whole cache `(k, v)` [L, B, S, KVH, D] carried through the layer scan: this layer's
    new keys/values are scattered in place at `[layer, b, offsets[b] + t]` (out-of-range writes are dropped).
    """
    dtype = x.dtype
    h = rms_norm(x, p["attn_norm"], config.rms_norm_eps)
    q = jnp.einsum("bte,ehd->bthd", h, p["q_proj"].astype(dtype))  # [B, T, H, D]
    k = jnp.einsum("bte,ekd->btkd", h, p["k_proj"].astype(dtype))  # [B, T, KVH, D]
    v = jnp.einsum("bte,ekd->btkd", h, p["v_proj"].astype(dtype))
    if config.qkv_bias:
        q, k, v = q + p["q_bias"].astype(dtype), k + p["k_bias"].astype(dtype), v + p["v_bias"].astype(dtype)
    q = apply_rope(q, positions, inv_freq)
    k = apply_rope(k, positions, inv_freq)
    if cache_kv is not None:
        slots, index = _slot_indices(offsets, x.shape[1])  # [B, T] each
        k_all = cache_kv[0].at[layer, slots, index].set(k.astype(cache_kv[0].dtype), mode="drop")
        v_all = cache_kv[1].at[layer, slots, index].set(v.astype(cache_kv[1].dtype), mode="drop")
        new_cache_kv = (k_all, v_all)
        k = jax.lax.dynamic_index_in_dim(k_all, layer, 0, keepdims=False).astype(dtype)  # [B, S, KVH, D]
        v = jax.lax.dynamic_index_in_dim(v_all, layer, 0, keepdims=False).astype(dtype)
    else:
        new_cache_kv = None
    attn = attention(q, k, v, mask)
    x = x + jnp.einsum("bthd,hde->bte", attn, p["o_proj"].astype(dtype))
    h = rms_norm(x, p["mlp_norm"], config.rms_norm_eps)
    gate = jnp.einsum("bte,ef->btf", h, p["gate_proj"].astype(dtype))
    up = jnp.einsum("bte,ef->btf", h, p["up_proj"].astype(dtype))
    x = x + jnp.einsum("btf,fe->bte", jax.nn.silu(gate) * up, p["down_proj"].astype(dtype))
    return x, new_cache_kv


_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


# ----------------------------------------------------------------------------------------------------------
# NNX modules
# ----------------------------------------------------------------------------------------------------------
def _param(rngs: nnx.Rngs, shape, dtype, axes, std: Optional[float] = 0.02) -> nnx.Param:
    value = jnp.ones(shape, dtype) if std is None else std * jax.random.normal(rngs.params(), shape, dtype)
    return nnx.Param(value, logical_axes=axes)


class DecoderLayers(nnx.Module):
    """All decoder layers' weights, stacked on a leading `layers` axis (HF Linear weights transposed to [in, out])."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        c, dt = config, jnp.dtype(config.param_dtype)
        n, e, h, k, d, f = c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
        self.attn_norm = _param(rngs, (n, e), dt, ("layers", "norm"), std=None)
        self.q_proj = _param(rngs, (n, e, h, d), dt, ("layers", "embed", "heads", "head_dim"))
        self.k_proj = _param(rngs, (n, e, k, d), dt, ("layers", "embed", "kv_heads", "head_dim"))
        self.v_proj = _param(rngs, (n, e, k, d), dt, ("layers", "embed", "kv_heads", "head_dim"))
        if c.qkv_bias:
            self.q_bias = _param(rngs, (n, h, d), dt, ("layers", "heads", "head_dim"))
            self.k_bias = _param(rngs, (n, k, d), dt, ("layers", "kv_heads", "head_dim"))
            self.v_bias = _param(rngs, (n, k, d), dt, ("layers", "kv_heads", "head_dim"))
        self.o_proj = _param(rngs, (n, h, d, e), dt, ("layers", "heads", "head_dim", "embed"))
        self.mlp_norm = _param(rngs, (n, e), dt, ("layers", "norm"), std=None)
        self.gate_proj = _param(rngs, (n, e, f), dt, ("layers", "embed", "mlp"))
        self.up_proj = _param(rngs, (n, e, f), dt, ("layers", "embed", "mlp"))
        self.down_proj = _param(rngs, (n, f, e), dt, ("layers", "mlp", "embed"))

    def stacked(self) -> dict[str, Array]:
        names = ["attn_norm", "q_proj", "k_proj", "v_proj", "o_proj", "mlp_norm", "gate_proj", "up_proj", "down_proj"]
        if hasattr(self, "q_bias"):
            names += ["q_bias", "k_bias", "v_bias"]
        return {name: getattr(self, name)[...] for name in names}


class Transformer(nnx.Module):
    """Decoder-only LM. `__call__` returns logits; `hidden_states` + `logits_from_hidden` allow chunked heads."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, lm_head: bool = True):
        self.config = config
        dt = jnp.dtype(config.param_dtype)
        self.embed = _param(rngs, (config.vocab_size, config.hidden_size), dt, ("vocab", "embed"))
        self.layers = DecoderLayers(config, rngs=rngs)
        self.final_norm = _param(rngs, (config.hidden_size,), dt, ("norm",), std=None)
        self.lm_head = nnx.data(None)  # tied (or head-less critic backbone): logits use the embedding
        if lm_head and not config.tie_embeddings:
            self.lm_head = _param(rngs, (config.hidden_size, config.vocab_size), dt, ("embed", "vocab"))

    def hidden_states(self, tokens: Array, positions: Array, token_mask: Optional[Array] = None,
                      cache: Optional[KVCache] = None, advance: Optional[Array] = None,
                      segment_ids: Optional[Array] = None):
        """Final-normed hidden states [B, T, E] and the updated cache (None without one).

        tokens/positions/token_mask: [B, T]. `advance` [B] moves each slot's `cache.end` (default T: every
        written position is consumed, right padding included, and stays marked invalid). `segment_ids` [B, T]
        (no cache only): a token attends only to earlier tokens with its own id.
        """
        c = self.config
        dtype = jnp.dtype(c.dtype)
        b, t = tokens.shape
        if token_mask is None:
            token_mask = jnp.ones((b, t), bool)
        token_mask = token_mask.astype(bool)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(dtype)  # [B, T, E]
        inv_freq = rope_inverse_frequencies(c)

        if cache is None:
            causal = jnp.tril(jnp.ones((t, t), bool))
            mask = causal[None] & token_mask[:, None, :]  # [B, T, T]
            if segment_ids is not None:
                mask &= segment_ids[:, :, None] == segment_ids[:, None, :]
            offsets, valid = None, None
        elif segment_ids is not None:
            raise ValueError("segment_ids (packed rows) apply to cache-free forwards only")
        else:
            offsets = cache.end  # [B]
            slots, index = _slot_indices(offsets, t)
            valid = cache.valid.at[slots, index].set(token_mask, mode="drop")  # [B, S]
            query_index = offsets[:, None] + jnp.arange(t)[None, :]  # [B, T] cache index of each new token
            key_index = jnp.arange(cache.max_len)
            mask = valid[:, None, :] & (key_index[None, None, :] <= query_index[:, :, None])  # [B, T, S]

        def body(carry, xs):
            x, cache_kv = carry
            p, layer = xs
            return _layer(c, inv_freq, x, p, positions, mask, cache_kv, offsets, layer), None

        if c.remat != "none":
            body = jax.checkpoint(body, policy=_REMAT[c.remat], prevent_cse=False)
        cache_kv = None if cache is None else (cache.k, cache.v)
        layers = (self.layers.stacked(), jnp.arange(c.num_layers))
        (x, new_kv), _ = jax.lax.scan(body, (x, cache_kv), layers)
        x = rms_norm(x, self.final_norm[...], c.rms_norm_eps)

        new_cache = None
        if cache is not None:
            step = jnp.full((b,), t, jnp.int32) if advance is None else advance.astype(jnp.int32)
            new_cache = KVCache(new_kv[0], new_kv[1], valid, cache.end + step)
        return x, new_cache

    def logits_from_hidden(self, hidden: Array) -> Array:
        """[..., E] -> [..., V] logits in f32."""
        w = self.embed[...].T if self.lm_head is None else self.lm_head[...]  # [E, V]
        return jnp.einsum("...e,ev->...v", hidden, w.astype(hidden.dtype), preferred_element_type=jnp.float32)

    def __call__(self, tokens: Array, positions: Array, token_mask: Optional[Array] = None,
                 cache: Optional[KVCache] = None, advance: Optional[Array] = None):
        hidden, new_cache = self.hidden_states(tokens, positions, token_mask, cache, advance)
        logits = self.logits_from_hidden(hidden)
        return logits if cache is None else (logits, new_cache)


def positions_from_mask(token_mask: Array) -> Array:
    """Positions for a left-padded batch: 0 at the first real token, pads clamped to 0. [B, T] -> [B, T]."""
    return jnp.maximum(jnp.cumsum(token_mask.astype(jnp.int32), axis=-1) - 1, 0)


def init_model(config: ModelConfig, seed: int = 0) -> Transformer:
    """A randomly initialised model (tests, benchmarks); use `rr1_jax.model.weights` for real weights."""
    return Transformer(config, rngs=nnx.Rngs(seed))


def abstract_model(config: ModelConfig, lm_head: bool = True) -> Transformer:
    """Shapes and metadata only: no memory is allocated (weight loading fills it tensor by tensor)."""
    return nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0), lm_head=lm_head))


def forward(graphdef: nnx.GraphDef, params: nnx.State, tokens: Array, positions: Array,
            token_mask: Optional[Array] = None, cache: Optional[KVCache] = None, advance: Optional[Array] = None):
    """Pure-function form of `Transformer.__call__` over a split `(graphdef, params)` (what `jax.jit` sees)."""
    return nnx.merge(graphdef, params)(tokens, positions, token_mask, cache, advance)
