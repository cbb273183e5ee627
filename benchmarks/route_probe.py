"""Route probe: which candidate does a synthetic-task policy pick, per question domain, at the routing token?

For each held-out question, the policy reads its prompt plus the terse demonstrations' first turn up to the
candidate name (`<think>capital `: the terse think names its pick; for a multi-hop question its decomposed first
hop, or with `--direct-multihop` the question asked in one call, for starts with `sft.direct_multihop=1`), and the probe
prints the mean probability of the first token of each candidate's name there, per domain. Greedy evaluation
shows only each domain's argmax; this shows whether a policy's choice depends on the domain at all, or whether
training only moved one preference shared by every domain (issue #7). The last column, the cosine between the
domains' mean final hidden states at that token, shows how far the state itself tells the domains apart.

Usage: `.venv/bin/python benchmarks/route_probe.py runs/learning/sft/hf_export runs/learning/ppo_seed0_alpha0/hf_export`
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import demo  # noqa: E402
from rr1_jax.data.demonstrations import make_demonstration  # noqa: E402
from rr1_jax.data.synthetic_candidates import default_candidates  # noqa: E402
from rr1_jax.model.weights import load_model  # noqa: E402
from rr1_jax.rl.run_setup import build_tokenizer, load_run_data, routing_template  # noqa: E402
from rr1_jax.rollout.pool_setup import open_pool  # noqa: E402
from rr1_jax.rollout.prompts import render_prompt  # noqa: E402


def probe_setup(path: str, num_questions: int):
    """(demo config, run data with `num_questions` held-out questions, pool, routing template, the export's
    tokenizer): what a probe of an exported synthetic-task policy needs besides its weights."""
    c = demo.get_config()
    c.model.path = path
    c.data.val_size = num_questions
    c.data.synthetic.num_test = max(c.data.synthetic.num_test, num_questions)
    data = load_run_data(c)
    with contextlib.ExitStack() as stack:
        pool, _ = open_pool(c.pool, data.task, stack)
        template = routing_template(c, pool)
        tokenizer = build_tokenizer(c, data, template, pool.names)
    return c, data, pool, template, tokenizer


def _domain_means(rows: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {domain: np.mean(values, axis=0) for domain, values in sorted(rows.items())}


def route_probabilities(path: str, num_questions: int, decompose_multihop: bool = True
                        ) -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(candidate names, {domain: [num candidates] mean probability of each at the first routing token},
    {domain: [E] mean final hidden state there})."""
    _, data, pool, template, tokenizer = probe_setup(path, num_questions)
    model = load_model(path)
    by_domain, states = collections.defaultdict(list), collections.defaultdict(list)
    for domain, ids, name_ids in routing_prefixes(data, tokenizer, template, pool.names, decompose_multihop):
        hidden, _ = model.hidden_states(jnp.asarray([ids]), jnp.arange(len(ids))[None])
        logits = model.logits_from_hidden(hidden[0, -1])  # [V]
        by_domain[domain].append(np.asarray(jax.nn.softmax(logits)[jnp.asarray(name_ids)]))
        states[domain].append(np.asarray(hidden[0, -1], np.float32))
    return pool.names, _domain_means(by_domain), _domain_means(states)


def routing_prefixes(data, tokenizer, template, names, decompose_multihop: bool = True):
    """(domain, token ids, [C] name token ids) per held-out question: its prompt plus the terse demonstrations'
    first turn up to the candidate name (the position whose next token is the routing choice), and the token each
    of `names` starts with there. The turn is tokenised with each name in place and the position taken where the
    encodings part: a BPE tokenizer merges the space before a name into the name's first token."""
    profiles = default_candidates()
    for record in data.val:
        turn = make_demonstration(record, data.task.table, profiles, strategy="uniform", style="terse",
                                  decompose_multihop=decompose_multihop)
        head, name_ids = split_at_names(tokenizer, turn.text[:turn.text.index(turn.routes[0])], names)
        yield record.metadata["domain"], render_prompt(tokenizer, record.question, template) + head, name_ids


def split_at_names(tokenizer, head: str, names) -> tuple[list[int], list[int]]:
    """(ids of `head` up to where a name begins, [C] the first token of each name there): `head + name` encoded
    for every name, split where the encodings part (a name's first token may swallow the end of `head`)."""
    encoded = [tokenizer.encode(head + name, add_special_tokens=False) for name in names]
    shared = 0
    while all(len(e) > shared + 1 and e[shared] == encoded[0][shared] for e in encoded):
        shared += 1
    return encoded[0][:shared], [e[shared] for e in encoded]


def cosines(states: dict[str, np.ndarray]) -> np.ndarray:
    """[D, D] cosine similarity of the domains' mean routing states: near 1, an update of a candidate's output
    embedding moves its logit in every domain alike (the preference shared by all domains, issue #7)."""
    unit = np.stack([v / np.linalg.norm(v) for v in states.values()])  # [D, E]
    return unit @ unit.T


def probe_parser(description: str) -> argparse.ArgumentParser:
    """The routing probes' command line: exported policies, `--eval` questions, `--direct-multihop`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="exported policies (hf_export directories of synthetic runs)")
    parser.add_argument("--eval", type=int, default=100, help="held-out questions")
    parser.add_argument("--direct-multihop", action="store_true",
                        help="probe multi-hop questions asked in one call (starts with sft.direct_multihop=1)")
    return parser


def probe_arguments(description: str) -> argparse.Namespace:
    return probe_parser(description).parse_args()


def main():
    args = probe_arguments(__doc__)
    for path in args.paths:
        names, table, states = route_probabilities(path, args.eval, not args.direct_multihop)
        cos = cosines(states)
        print(f"\n{path}\n\n| domain | " + " | ".join(n.removesuffix("-Instruct") for n in names)
              + " | state cosine to " + ", ".join(states) + " |\n|---|" + "---|" * (len(names) + 1))
        for (domain, probs), row in zip(table.items(), cos):
            print(f"| {domain} | " + " | ".join(f"{p:.2f}" for p in probs) + " | "
                  + " ".join(f"{x:.2f}" for x in row) + " |")


if __name__ == "__main__":
    main()
