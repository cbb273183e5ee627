"""Route gradients: does a policy-gradient step on one domain's routing move every other domain's as much?

For each held-out question, the gradient of log pi(candidate | routing prefix) with respect to every policy
weight, for each candidate (the prefix is `route_probe.py`'s: the prompt and the first think, up to the
candidate name). Averaged per domain, the cosine between two domains' mean gradients says how much of an update
that raises a candidate after one domain's questions raises it after the other's (exactly so for plain SGD; Adam
rescales each weight). Near 1, PPO can only move one preference shared by all domains, and the candidate that is
best on average wins everywhere (issue #7, docs/learning.md). Printed per candidate: the mean and the largest
cosine between two domains, over all weights and over all but the (tied) embedding.

Usage: `.venv/bin/python benchmarks/route_gradients.py runs/learning/sft/hf_export [more exports] [--eval 100]
[--max-weights 20000000]`
"""
from __future__ import annotations

import collections
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.route_probe import probe_parser, probe_setup, routing_prefixes  # noqa: E402
from rr1_jax.generate.buckets import round_up  # noqa: E402
from rr1_jax.model.weights import load_model  # noqa: E402


def weight_sample(sizes: list[int], max_weights: int, seed: int = 0) -> list[np.ndarray | None]:
    """Per leaf, the indices of its flattened weights to keep: a uniform random `max_weights` of all of them
    (None everywhere when the model has no more). Cosines over a random subset of coordinates estimate those over
    all, and a pretrained model's [C, P] per-domain sums would not fit in memory."""
    total = int(np.sum(sizes))
    if max_weights <= 0 or total <= max_weights:
        return [None] * len(sizes)
    chosen = np.sort(np.random.default_rng(seed).choice(total, max_weights, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [chosen[(chosen >= start) & (chosen < start + size)] - start for start, size in zip(starts, sizes)]


def domain_gradients(path: str, num_questions: int, decompose_multihop: bool = True, max_weights: int = 0):
    """(candidate names, {domain: [C, P] mean gradient of each candidate's log-probability}, [P] bool: which of
    the P flattened weights belong to the embedding). With `max_weights`, P is a random subset of that many."""
    _, data, pool, template, tokenizer = probe_setup(path, num_questions)
    graphdef, weights = nnx.split(load_model(path))

    def route_logprobs(weights, ids, last, name_ids):  # ids [1, W] right-padded (causal: padding cannot reach
        # `last`); name_ids [C]
        logits = nnx.merge(graphdef, weights)(ids, jnp.arange(ids.shape[1])[None])[0, last]  # [V]
        return jax.nn.log_softmax(logits.astype(jnp.float32))[name_ids]  # [C]

    jacobian = jax.jit(jax.jacrev(route_logprobs))
    leaves, _ = jax.tree_util.tree_flatten_with_path(weights)
    keep = weight_sample([leaf.size for _, leaf in leaves], max_weights)
    is_embed = np.concatenate([np.full(leaf.size if k is None else len(k), "embed" in jax.tree_util.keystr(key))
                               for (key, leaf), k in zip(leaves, keep)])
    sums, counts = {}, collections.Counter()
    for domain, ids, name_ids in routing_prefixes(data, tokenizer, template, pool.names, decompose_multihop):
        width = round_up(len(ids), 64)  # one compiled shape per 64 tokens of length
        padded = np.full((1, width), tokenizer.pad_token_id, np.int32)
        padded[0, :len(ids)] = ids
        grads = jacobian(weights, jnp.asarray(padded), len(ids) - 1, jnp.asarray(name_ids))  # leaves [C, *leaf]
        flat = np.concatenate([np.asarray(g.reshape(len(pool.names), -1) if k is None else
                                          g.reshape(len(pool.names), -1)[:, k], np.float64)
                               for g, k in zip(jax.tree_util.tree_leaves(grads), keep)], axis=1)  # [C, P]
        sums[domain] = sums.get(domain, 0.0) + flat
        counts[domain] += 1
    return pool.names, {d: sums[d] / counts[d] for d in sorted(sums)}, is_embed


def domain_cosines(means: dict[str, np.ndarray], keep: np.ndarray) -> np.ndarray:
    """[C, D, D]: per candidate, the cosine between each pair of domains' mean gradients over the `keep` weights."""
    g = np.stack([m[:, keep] for m in means.values()], axis=1)  # [C, D, P']
    unit = g / np.linalg.norm(g, axis=-1, keepdims=True)
    return np.einsum("cdp,cep->cde", unit, unit)


def main():
    parser = probe_parser(__doc__)
    parser.add_argument("--max-weights", type=int, default=20_000_000,
                        help="cosines over a random subset of this many weights when the policy has more (a "
                             "pretrained one); 0: all")
    args = parser.parse_args()
    for path in args.paths:
        names, means, is_embed = domain_gradients(path, args.eval, not args.direct_multihop, args.max_weights)
        off = ~np.eye(len(means), dtype=bool)
        print(f"\n{path} (domains: {', '.join(means)})\n\n| candidate | cosine between domains: mean | max "
              "| without the embedding: mean | max |\n|---|---|---|---|---|")
        both = [domain_cosines(means, keep)[:, off] for keep in (np.ones_like(is_embed), ~is_embed)]  # [C, pairs]
        for i, name in enumerate(names):
            print(f"| {name.removesuffix('-Instruct')} | " + " | ".join(
                f"{cos[i].mean():.2f} | {cos[i].max():.2f}" for cos in both) + " |")


if __name__ == "__main__":
    main()
