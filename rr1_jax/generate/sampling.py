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
TOP_P_BISECTIONS = 40  # halvings of the logit range (2^-40 of it: below float32 spacing but right around 0)


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
        x = jnp.where(x < top_p_threshold(x, params.top_p), -jnp.inf, x)
    return jax.nn.log_softmax(x, axis=-1)


def top_p_threshold(x: Array, top_p: float, iterations: int = TOP_P_BISECTIONS) -> Array:
    """[..., V] logits -> [..., 1]: the smallest logit of the nucleus, the fewest largest logits whose probability
    reaches top_p (ties with it are kept too).

    Found by bisection on the logit value, each step one masked sum over the vocabulary: no [..., V] sort per
    decoded token (a sort of 8 x 49,152 logits takes ~150 ms on a 2-core CPU; `benchmarks/decode.py` measures
    both). Invariant: the logits >= lo hold at least top_p, those >= hi less; once no two distinct logits lie
    between lo and hi, the largest logit below hi is the threshold. The mass is a masked sum, not a cumulative
    sum in sorted order, so the two can disagree on a token whose inclusion moves the mass across top_p by less
    than float rounding.
    """
    probs = jnp.exp(x - jax.nn.logsumexp(x, axis=-1, keepdims=True))  # [..., V]
    finite = jnp.isfinite(x)
    lo = jnp.min(jnp.where(finite, x, jnp.inf), axis=-1, keepdims=True)  # everything kept: mass 1
    hi = jnp.max(x, axis=-1, keepdims=True) + 1.0  # nothing kept: mass 0

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) / 2
        enough = jnp.sum(jnp.where(x >= mid, probs, 0.0), axis=-1, keepdims=True) >= top_p
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    _, hi = jax.lax.fori_loop(0, iterations, halve, (lo, hi))
    return jnp.max(jnp.where(x < hi, x, -jnp.inf), axis=-1, keepdims=True)


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
