"""Shared rollout fixtures: a byte-level chat tokenizer with two "macro" tokens, and the synthetic task.

The tokenizer has 261 ids: id 0 decodes to a whole route (`<search> Qwen2.5-7B-Instruct: ... </search>`), id 1 to
a whole answer, ids 2..257 are the 256 bytes, then <|endoftext|> (pad), <|im_start|>, <|im_end|> (EOS). A model
whose logits are all equal decodes id 0 greedily, so the real engine can be made to route on every turn.
"""
import pytest

from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task

from tests.byte_tokenizer import byte_tokenizer


def make_byte_tokenizer(route_text: str, answer_text: str):
    """Macro id 0 = a whole route, id 1 = a whole answer (see tests/byte_tokenizer.py)."""
    return byte_tokenizer((route_text, answer_text))


@pytest.fixture(scope="session")
def task():
    return make_synthetic_task(SyntheticConfig(seed=0, num_train=16, num_test=8, countries_per_split=6,
                                               companies_per_split=6, albums_per_split=6))


@pytest.fixture(scope="session")
def route_query(task):
    """A query the simulated candidates can look up (a capital from the task's table)."""
    country = sorted(task.table.capital_of)[0]
    return f"What is the capital of {country}?"


@pytest.fixture(scope="session")
def tokenizer(route_query):
    return make_byte_tokenizer(f"<search> Qwen2.5-7B-Instruct: {route_query} </search>", "<answer> 42 </answer>")
