"""Shared rollout fixtures: a byte-level chat tokenizer with two "macro" tokens, and the synthetic task.

The tokenizer has 261 ids: id 0 decodes to a whole route (`<search> Qwen2.5-7B-Instruct: ... </search>`), id 1 to
a whole answer, ids 2..257 are the 256 bytes, then <|endoftext|> (pad), <|im_start|>, <|im_end|> (EOS). A model
whose logits are all equal decodes id 0 greedily, so the real engine can be made to route on every turn.
"""
import pytest

from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_byte_tokenizer(route_text: str, answer_text: str):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from rr1_jax.generate.stops import _gpt2_unicode_to_byte

    to_char = {b: c for c, b in _gpt2_unicode_to_byte().items()}

    def chars(text):
        return "".join(to_char[b] for b in text.encode("utf-8"))

    vocab = {chars(route_text): 0, chars(answer_text): 1}
    vocab.update({to_char[b]: 2 + b for b in range(256)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


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
