"""A small byte-level BPE tokenizer trained on the synthetic task's own text, for tiny CPU policies.

A 49k-token vocabulary makes the LM head dominate a tiny model's cost (≈100 GFLOP per 8k positions at width
128); a task-sized vocabulary (~2k) cuts it ~25x while staying byte-level, so any text still encodes and the
generation engine's stop-string automaton works unchanged. Training is deterministic for a fixed corpus.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from rr1_jax.data.demonstrations import make_demonstrations
from rr1_jax.data.synthetic import SyntheticTask
from rr1_jax.data.synthetic_candidates import default_candidates, simulated_reply

SPECIAL_TOKENS = ("<|pad|>", "<|eos|>")
ROUTER_TAGS = ("<think>", "</think>", "<search>", "</search>", "<information>", "</information>", "<answer>",
               "</answer>")


def task_corpus(task: SyntheticTask, templates: Sequence[str] = ()) -> Iterable[str]:
    """Questions, prompt templates, every candidate's reply and demonstration texts of the training split."""
    yield from templates
    profiles = default_candidates()
    for strategy in ("uniform", "oracle"):
        for demo in make_demonstrations(task.train, task.table, profiles, strategy=strategy):
            yield demo.text
    for record in task.train + task.test:
        yield record.question
        for profile in profiles:
            yield simulated_reply(profile, record.question, task.table, 0).text


def train_task_tokenizer(corpus: Iterable[str], vocab_size: int = 2048):
    """A transformers fast tokenizer (byte-level BPE, pad/eos specials, router tags kept whole)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=SPECIAL_TOKENS[0], eos_token=SPECIAL_TOKENS[1])
