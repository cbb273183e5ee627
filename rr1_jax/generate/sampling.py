"""Token sampling: greedy, temperature, top-k, top-p, with per-slot PRNG keys and behaviour log-probs.

`behaviour_log_probs` is the one definition of the distribution a token is drawn from (temperature, then top-k,
then top-p, renormalised); the sampler draws from it and reports the drawn token's log-prob under it, so PPO's
"old log-probs" are exactly those of the behaviour policy. Greedy decoding is the temperature -> 0 limit, whose
distribution is a point mass (log-prob 0 for every token, useless as a behaviour log-prob); for greedy we report
the model's own log-prob, `log_softmax(logits)` at temperature 1 with no truncation.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen. top_k <= 0 and top_p >= 1 disable those filters (vLLM conventions)."""

    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0
    greedy: bool = False

    def __post_init__(self):
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0; use SamplingParams(greedy=True) "
                             "for argmax decoding")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must lie in (0, 1]")

    @classmethod
    def router_r1(cls) -> "SamplingParams":
        """Upstream Router-R1's vLLM setting for every policy generation (spec/router-r1.md §5.1)."""
        return cls(temperature=1.0, top_k=-1, top_p=0.95)


def behaviour_log_probs(logits: Array, params: SamplingParams) -> Array:
    """[..., V] f32 logits -> [..., V] log-probs of the distribution tokens are sampled from.

    Filtered-out tokens get -inf. Tokens tied with the top-k / top-p threshold are all kept.
    """
    logits = logits.astype(jnp.float32)
    if params.greedy:
        return jax.nn.log_softmax(logits, axis=-1)
    x = logits / params.temperature
    vocab = x.shape[-1]
    if 0 < params.top_k < vocab:
        kth_largest = jax.lax.top_k(x, params.top_k)[0][..., -1:]  # [..., 1]
        x = jnp.where(x < kth_largest, -jnp.inf, x)
    if params.top_p < 1.0:
        # keep the smallest prefix of the descending order whose mass reaches top_p (the token crossing it too)
        sorted_desc = -jnp.sort(-x, axis=-1)  # [..., V]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = mass_before < params.top_p
        threshold = jnp.min(jnp.where(kept, sorted_desc, jnp.inf), axis=-1, keepdims=True)  # [..., 1]
        x = jnp.where(x < threshold, -jnp.inf, x)
    return jax.nn.log_softmax(x, axis=-1)


def sample_tokens(logits: Array, keys: Array, params: SamplingParams) -> tuple[Array, Array, Array]:
    """Draw one token per slot. logits [B, V], keys [B, 2] uint32 -> (ids [B], logprobs [B], next keys [B, 2])."""
    log_probs = behaviour_log_probs(logits, params)  # [B, V]
    if params.greedy:
        ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        next_keys = keys
    else:
        split = jax.vmap(lambda k: jax.random.split(k, 2))(keys)  # [B, 2, 2]
        next_keys, draw_keys = split[:, 0], split[:, 1]
        ids = jax.vmap(jax.random.categorical)(draw_keys, log_probs).astype(jnp.int32)
    chosen = jnp.take_along_axis(log_probs, ids[:, None], axis=-1)[:, 0]  # [B]
    return ids, chosen, next_keys


def slot_keys(seed: int, num_slots: int) -> Array:
    """Independent per-slot PRNG keys [B, 2] (raw uint32 key data, so they shard like any batch array)."""
    return jax.random.split(jax.random.PRNGKey(seed), num_slots)
