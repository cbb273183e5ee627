"""A small byte-level BPE tokenizer trained on the synthetic task's own text, for tiny CPU policies.

A 49k-token vocabulary makes the LM head dominate a tiny model's cost (≈100 GFLOP per 8k positions at width
128); a task-sized vocabulary (~2k) cuts it ~25x while staying byte-level, so any text still encodes and the
generation engine's stop-string automaton works unchanged. Training is deterministic for a fixed corpus.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from rr1_jax.data.demonstrations import make_demonstrations
from rr1_jax.data.synthetic import SyntheticTask
from rr1_jax.data.synthetic_candidates import UNABLE_TO_ANSWER, default_candidates, simulated_reply

SPECIAL_TOKENS = ("<|pad|>", "<|eos|>")
# GPT-2's pre-tokenisation (words, numbers and punctuation runs, each with its leading space), as ByteLevel's own
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
ROUTER_TAGS = ("<think>", "</think>", "<search>", "</search>", "<information>", "</information>", "<answer>",
               "</answer>")


def task_corpus(task: SyntheticTask, templates: Sequence[str] = ()) -> Iterable[str]:
    """Questions, prompt templates, every candidate's reply, demonstration texts of the training split (verbose,
    and terse with both multi-hop plans), and every name in the knowledge table (a wrong reply may name an entity no
    question mentions)."""
    yield from templates
    yield UNABLE_TO_ANSWER  # what a candidate says to a query naming nothing it knows
    t = task.table
    yield " ".join([*t.capital_of, *t.capital_of.values(), *t.founder_of, *t.founder_of.values(), *t.year_of])
    profiles = default_candidates()
    for strategy in ("uniform", "oracle"):
        for demo in make_demonstrations(task.train, task.table, profiles, strategy=strategy):
            yield demo.text
    # the terse thinks have words of their own ("founding"); both multi-hop plans
    for demo in make_demonstrations(task.train, task.table, profiles, strategy="uniform", style="terse",
                                    direct_multihop=0.5):
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


def answer_phrases(task: SyntheticTask) -> list[str]:
    """The knowledge table's answers that are several words (founders' names), for ``train_word_tokenizer``."""
    return sorted({v for kind in task.config.domains for v in task.table.answers_of_kind(kind) if " " in v})


def train_word_tokenizer(corpus: Iterable[str], whole: Sequence[str] = (), phrases: Sequence[str] = ()):
    """A word-level tokenizer: every word, number and punctuation run of the corpus (with and without a leading
    space, GPT-2 pre-tokenisation, byte-level so decoding is exact) is one token; router tags are whole tokens;
    the 256 single bytes and the years 1900-2099 are always in; each string in ``whole`` (e.g. the candidate
    names, so a routing choice is one token) is one token too, with and without its leading space like any word
    (so a name right after a word is predicted at that word); each multi-word string in ``phrases`` is one word
    (e.g. a founder's name: with and without its leading space, like any word).

    For the tiny demo policy: an entity name is one token, so copying it from the question or from a reply is
    a single attention lookup instead of a multi-token induction (which a 2-layer model does not learn in a CPU
    budget: it dropped or replaced the second word of 16-28% of founders' names). Text made of corpus words
    encodes losslessly; any other word becomes [UNK].
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if phrases:  # phrases first (whole, not followed by more letters), then GPT-2's split; bytes mapped after
        alternation = "|".join(map(re.escape, sorted(phrases, key=len, reverse=True)))
        split = Regex(f" ?(?:{alternation})(?![\\p{{L}}\\p{{N}}])|{_GPT2_SPLIT}")
        pre = pre_tokenizers.Sequence([pre_tokenizers.Split(split, behavior="isolated"),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    space = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(" a")[0][0][0]  # "Ġ"
    counts: dict[str, int] = {}
    kept = tuple(ROUTER_TAGS) + tuple(whole) + tuple(" " + w for w in whole)
    tag_split = re.compile("(" + "|".join(map(re.escape, sorted(kept, key=len, reverse=True))) + ")")
    for text in list(corpus) + [" ".join(str(y) for y in range(1900, 2100))]:
        parts = [p for p in tag_split.split(text) if p and p not in kept]  # as encoding will see them
        for piece, _ in (x for part in parts for x in pre.pre_tokenize_str(part)):
            bare = piece[1:] if piece.startswith(space) and len(piece) > 1 else piece
            for form in (bare, space + bare):
                counts[form] = counts.get(form, 0) + 1
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + ("[UNK]",))}
    for piece in sorted(pre_tokenizers.ByteLevel.alphabet()) + sorted(counts, key=lambda w: (-counts[w], w)):
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.ByteLevel()
    backend.add_tokens([AddedToken(tag, normalized=False) for tag in kept])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=SPECIAL_TOKENS[0], eos_token=SPECIAL_TOKENS[1],
                                   unk_token="[UNK]")
