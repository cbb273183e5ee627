"""Copy probe: does a synthetic-task policy copy a candidate's answer from `<information>` into `<answer>`?

For each held-out question, the policy reads its prompt plus the terse demonstration of the specialist route (its
think, its call, the specialist's real reply as the observation) up to `<answer>`, then decodes greedily. The
probe counts the decoded answers equal to the reply's answer (upstream EM normalisation), per domain, and prints
the misses. Routing plays no part, so this isolates the skill that issue #7's 90%-of-oracle target needs at >= 99%
(`benchmarks/route_frontier.py`).

Usage: `.venv/bin/python benchmarks/copy_probe.py runs/learning/sft/hf_export [more exports] [--eval 100]`
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.route_probe import probe_setup  # noqa: E402
from rr1_jax.data.demonstrations import make_demonstration  # noqa: E402
from rr1_jax.data.synthetic_candidates import default_candidates  # noqa: E402
from rr1_jax.data.synthetic_routing import normalize_answer  # noqa: E402
from rr1_jax.generate.buckets import round_up  # noqa: E402
from rr1_jax.model.weights import load_model  # noqa: E402
from rr1_jax.rollout.prompts import render_prompt  # noqa: E402

_OPEN, _CLOSE = "<answer>", "</answer>"


def copy_answers(path: str, num_questions: int, max_new_tokens: int = 12):
    """[(domain, reply's answer, decoded answer)] for the first `num_questions` held-out questions."""
    c, data, _, template, tokenizer = probe_setup(path, num_questions)
    graphdef, weights = nnx.split(load_model(path))

    @jax.jit
    def logits_at(weights, ids, last):  # ids [1, W] right-padded (causal: padding cannot reach `last`)
        return nnx.merge(graphdef, weights)(ids, jnp.arange(ids.shape[1])[None])[0, last]  # [V]

    rows = []
    for record in data.val:
        demo_ = make_demonstration(record, data.task.table, default_candidates(), strategy="specialist",
                                   style="terse", decompose_multihop=False)
        *turns, last = demo_.segments
        ids = list(render_prompt(tokenizer, record.question, template))
        for segment in turns:  # each segment tokenised on its own, observations cut, as the rollout does
            seg = tokenizer.encode(segment.text, add_special_tokens=False)
            ids += seg if segment.is_policy else seg[:c.rollout.max_obs_length]
        ids += tokenizer.encode(last.text[:last.text.index(_OPEN) + len(_OPEN)], add_special_tokens=False)
        start = len(ids)
        width = round_up(start + max_new_tokens, 64)  # one compiled shape per 64 tokens of length
        for _ in range(max_new_tokens):  # greedy, full recompute: a few tokens of a tiny model
            padded = np.full((1, width), tokenizer.pad_token_id, np.int32)
            padded[0, :len(ids)] = ids
            ids.append(int(jnp.argmax(logits_at(weights, jnp.asarray(padded), len(ids) - 1))))
            if _CLOSE in tokenizer.decode(ids[start:]):
                break
        decoded = tokenizer.decode(ids[start:]).split(_CLOSE)[0].strip()
        rows.append((record.metadata["domain"], demo_.final_answer, decoded))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="exported policies (hf_export directories of synthetic runs)")
    parser.add_argument("--eval", type=int, default=100, help="held-out questions")
    args = parser.parse_args()
    for path in args.paths:
        rows = copy_answers(path, args.eval)
        hits, totals = collections.Counter(), collections.Counter()
        for domain, reply, decoded in rows:
            totals[domain] += 1
            hits[domain] += normalize_answer(reply) == normalize_answer(decoded)
        print(f"\n{path}: copied {sum(hits.values())} of {len(rows)} replies' answers "
              f"({sum(hits.values()) / len(rows):.1%}); by domain: "
              + ", ".join(f"{d} {hits[d]}/{totals[d]}" for d in sorted(totals)))
        for domain, reply, decoded in rows:
            if normalize_answer(reply) != normalize_answer(decoded):
                print(f"  {domain}: reply {reply!r} -> answer {decoded!r}")


if __name__ == "__main__":
    main()
