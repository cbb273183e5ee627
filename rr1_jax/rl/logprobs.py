"""Per-token log-probs, entropies and values of a trajectory batch, without materialising `[B, T, V]` logits.

Alignment (verl): the log-prob, entropy and value of response token t come from the network output at absolute
position P + t - 1, the hidden state *before* token t. The LM head runs over the response in chunks of
`chunk_size` tokens (`lax.map` over `[C, B, chunk, E]` hidden-state chunks, each rematerialised in the backward
pass), so peak memory holds `[B, chunk, V]` logits instead of `[B, R, V]`.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def response_hidden_states(model, tokens: Array, positions: Array, attention_mask: Array,
                           prompt_width: int) -> Array:
    """Hidden states that predict each response token: `hidden[:, P-1:T-1]`. Returns [B, R, E]."""
    hidden, _ = model.hidden_states(tokens, positions, attention_mask)  # [B, T, E]
    return hidden[:, prompt_width - 1:-1]


def chunked_target_logprobs(model, hidden: Array, targets: Array, *, temperature: float = 1.0,
                            chunk_size: int = 256, with_entropy: bool = False):
    """log softmax(logits / temperature)[target] (and the entropy) per position, chunked over the sequence.

    hidden: [B, R, E], targets: [B, R] -> (logp [B, R] f32, entropy [B, R] f32 or None).
    """
    b, r, e = hidden.shape
    chunk = max(1, min(chunk_size, r))
    num_chunks = -(-r // chunk)
    pad = num_chunks * chunk - r
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(targets, ((0, 0), (0, pad)))
    hidden_chunks = hidden.reshape(b, num_chunks, chunk, e).swapaxes(0, 1)  # [C, B, chunk, E]
    target_chunks = targets.reshape(b, num_chunks, chunk).swapaxes(0, 1)  # [C, B, chunk]

    @jax.checkpoint  # the backward pass recomputes each chunk's logits instead of storing them all
    def one_chunk(args):
        h, tgt = args
        logits = model.logits_from_hidden(h) / temperature  # [B, chunk, V] f32
        log_norm = jax.nn.logsumexp(logits, axis=-1)  # [B, chunk]
        logp = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0] - log_norm
        if not with_entropy:
            return logp, jnp.zeros_like(logp)
        probs = jnp.exp(logits - log_norm[..., None])
        entropy = log_norm - jnp.sum(probs * logits, axis=-1)  # logsumexp(z) - Σ softmax(z)·z
        return logp, entropy

    logp, entropy = jax.lax.map(one_chunk, (hidden_chunks, target_chunks))  # [C, B, chunk] each
    logp = logp.swapaxes(0, 1).reshape(b, -1)[:, :r]
    entropy = entropy.swapaxes(0, 1).reshape(b, -1)[:, :r]
    return logp, (entropy if with_entropy else None)


def token_logprobs(graphdef: nnx.GraphDef, params, tokens: Array, positions: Array, attention_mask: Array,
                   prompt_width: int, *, temperature: float = 1.0, chunk_size: int = 256,
                   with_entropy: bool = False):
    """Log-probs of the response tokens under a policy `(graphdef, params)`: ([B, R], [B, R] or None).

    tokens/positions/attention_mask: [B, P+R]. Pure; jit it (or call it inside a jitted update).
    """
    model = nnx.merge(graphdef, params)
    hidden = response_hidden_states(model, tokens, positions, attention_mask, prompt_width)  # [B, R, E]
    targets = tokens[:, prompt_width:]  # [B, R]
    return chunked_target_logprobs(model, hidden, targets, temperature=temperature, chunk_size=chunk_size,
                                   with_entropy=with_entropy)


def value_mask(attention_mask: Array, prompt_width: int) -> Array:
    """The critic's mask, verl's `attention_mask[:, P-1:T-1]` (shifted right by one). [B, P+R] -> [B, R]."""
    return attention_mask[:, prompt_width - 1:-1]


def token_values(graphdef: nnx.GraphDef, params, tokens: Array, positions: Array, attention_mask: Array,
                 prompt_width: int) -> Array:
    """Critic values V(s_t) for every response index t (read at position P+t-1), unmasked. Returns [B, R] f32."""
    critic = nnx.merge(graphdef, params)
    return critic(tokens, positions, attention_mask)[:, prompt_width - 1:-1]


def map_rows(fn, arrays: tuple, rows_per_call: Optional[int]):
    """Apply `fn(*arrays)` to row chunks of `rows_per_call` via `lax.map` (bounded activation memory).

    All arrays share the leading row dimension N; N must be a multiple of `rows_per_call`.
    """
    n = arrays[0].shape[0]
    if not rows_per_call or rows_per_call >= n:
        return fn(*arrays)
    if n % rows_per_call:
        raise ValueError(f"{n} rows are not a multiple of rows_per_call={rows_per_call}")
    chunks = tuple(a.reshape((n // rows_per_call, rows_per_call) + a.shape[1:]) for a in arrays)
    out = jax.lax.map(lambda xs: fn(*xs), chunks)
    return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), out)
