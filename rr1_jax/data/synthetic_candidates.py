"""Simulated candidate LLMs for the synthetic task: who knows which domain, what they cost, how they answer.

``simulated_reply`` is the single source of truth for what a simulated candidate says; the simulated
OpenAI-compatible server, the oracle and the SFT demonstrations all call it. It is deterministic per
(seed, model, fact): asking the same model about the same fact in other words gives the same answer, as a
greedy real model would. Profiles reuse upstream's pool names, API ids and prices so prompts and name
resolution work unchanged; their abilities are invented.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Mapping, Sequence

from rr1_jax.data.synthetic import DOMAINS, Fact, KnowledgeTable

UNABLE_TO_ANSWER = ("I am unable to assist with this question because I have no information about it. "
                    "Please consult other LLMs for further assistance.")
_FILLER = ("This comes from the reference records I have on the subject.", "I am fairly confident in it.",
           "Other sources may describe it slightly differently.", "It is mentioned in several summaries.",
           "The records agree on this point.", "Let me know if you need more background.")


@dataclasses.dataclass(frozen=True)
class CandidateProfile:
    """A simulated candidate: ``accuracy[kind]`` is the chance it answers a fact of that kind correctly.

    Price is $ per 1M output tokens; episode cost follows upstream: completion_tokens x price (no 1e-6).
    ``verbosity``: 0 replies "Answer: <answer>."; otherwise whole explanation sentences (a restatement, then
    filler) follow it until at least ``verbosity`` words (longer replies cost more). The "Answer:" lead puts the
    answer after a space, as in the policy's ``<answer> X </answer>``: under a word tokenizer the copied token is
    then the very token to write (a reply opening with the bare word gave a different token, and a tiny policy
    learned identity copies only).
    """

    name: str
    model_id: str
    price_per_1m: float
    accuracy: Mapping[str, float]
    verbosity: int
    latency_mean_s: float
    latency_std_s: float

    def __post_init__(self):
        missing = [k for k in DOMAINS if k not in self.accuracy]
        if missing:
            raise ValueError(f"CandidateProfile {self.name!r}: accuracy lacks domains {missing}")
        bad = {k: p for k, p in self.accuracy.items() if not 0.0 <= p <= 1.0}
        if bad:
            raise ValueError(f"CandidateProfile {self.name!r}: accuracies must lie in [0, 1], got {bad}")
        if self.price_per_1m < 0 or self.verbosity < 0 or self.latency_mean_s < 0 or self.latency_std_s < 0:
            raise ValueError(f"CandidateProfile {self.name!r}: price, verbosity and latency must be >= 0")


# (name, api id, $/1M output, accuracy by domain in DOMAINS order, verbosity, latency mean, latency std)
_DEFAULT_TABLE = (
    ("Qwen2.5-7B-Instruct", "qwen/qwen2.5-7b-instruct", 0.30, (0.92, 0.20, 0.85, 0.25, 0.15), 6, 0.8, 0.2),
    ("LLaMA-3.1-8B-Instruct", "meta/llama-3.1-8b-instruct", 0.18, (0.25, 0.25, 0.25, 0.25, 0.08), 0, 0.6, 0.15),
    ("LLaMA-3.1-70B-Instruct", "meta/llama-3.1-70b-instruct", 0.88, (0.60, 0.60, 0.60, 0.60, 0.40), 25, 2.0, 0.5),
    ("Mistral-7B-Instruct", "mistralai/mistral-7b-instruct-v0.3", 0.20, (0.20, 0.92, 0.30, 0.20, 0.10), 8, 0.7,
     0.2),
    ("Mixtral-8x22B-Instruct", "mistralai/mixtral-8x22b-instruct-v0.1", 1.20, (0.50, 0.50, 0.55, 0.45, 0.90), 40,
     2.5, 0.6),
    ("Gemma-2-27B-Instruct", "google/gemma-2-27b-it", 0.80, (0.30, 0.30, 0.30, 0.92, 0.20), 15, 1.5, 0.4),
)


def default_candidates(difficulty: float = 0.0) -> tuple[CandidateProfile, ...]:
    """Six candidates: four cheap specialists (capitals, founders, albums), a cheap weak all-rounder, a large
    expensive generalist (LLaMA-70B) and an expensive verbose multi-hop expert (Mixtral).

    ``difficulty`` in [0, 1) scales every accuracy by ``1 - difficulty``.
    """
    if not 0.0 <= difficulty < 1.0:
        raise ValueError(f"difficulty must be in [0, 1), got {difficulty}")
    return tuple(
        CandidateProfile(name=name, model_id=model_id, price_per_1m=price,
                         accuracy={k: p * (1.0 - difficulty) for k, p in zip(DOMAINS, accuracy)},
                         verbosity=verbosity, latency_mean_s=mean, latency_std_s=std)
        for name, model_id, price, accuracy, verbosity, mean, std in _DEFAULT_TABLE)


@dataclasses.dataclass(frozen=True)
class SimulatedReply:
    """What a candidate answered: the full text, the answer value inside it (None for "unable"), its cost."""

    text: str
    answer: str | None
    fact: Fact | None
    completion_tokens: int
    cost: float


def count_completion_tokens(text: str) -> int:
    """A tokenizer-free proxy for completion tokens: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _wrong_answer(fact: Fact, table: KnowledgeTable, model_id: str, seed: int) -> str:
    pick = _uniform(seed, model_id, "wrong", fact.key)
    if fact.kind == "album_year":
        offsets = [o for o in range(-12, 13) if o != 0]
        return str(int(fact.answer) + offsets[int(pick * len(offsets))])
    pool = [a for a in table.answers_of_kind(fact.kind) if a != fact.answer]
    return pool[int(pick * len(pool))]


def _statement(fact: Fact, value: str) -> str:
    if fact.kind == "capital":
        return f"The capital of {fact.entity} is {value}."
    if fact.kind == "founder":
        return f"{fact.entity} was founded by {value}."
    if fact.kind == "founding_country":
        return f"{fact.entity} was founded in {value}."
    if fact.kind == "album_year":
        return f"The album {fact.entity} was released in {value}."
    return f"{fact.entity} was founded in a country whose capital is {value}."


def answers_correctly(profile: CandidateProfile, fact: Fact, seed: int) -> bool:
    """Whether ``profile`` knows ``fact`` (a fixed coin flip per seed, model and fact)."""
    return _uniform(seed, profile.model_id, "correct", fact.key) < profile.accuracy[fact.kind]


def reply_for_fact(profile: CandidateProfile, fact: Fact | None, table: KnowledgeTable,
                   seed: int = 0) -> SimulatedReply:
    """The reply of ``profile`` when asked about ``fact`` (None: the query named nothing it could look up)."""
    if fact is None:
        text, answer = UNABLE_TO_ANSWER, None
    else:
        answer = fact.answer if answers_correctly(profile, fact, seed) else _wrong_answer(fact, table,
                                                                                          profile.model_id, seed)
        text = f"Answer: {answer}."
        if profile.verbosity:
            sentences = [_statement(fact, answer)]
            while sum(len(x.split()) for x in sentences) < profile.verbosity:  # whole sentences, >= verbosity words
                sentences.append(_FILLER[(len(sentences) - 1) % len(_FILLER)])
            text = " ".join([text, *sentences])
    tokens = count_completion_tokens(text)
    return SimulatedReply(text=text, answer=answer, fact=fact, completion_tokens=tokens,
                          cost=tokens * profile.price_per_1m)


def simulated_reply(profile: CandidateProfile, query_text: str, table: KnowledgeTable, seed: int = 0) -> SimulatedReply:
    """The reply of ``profile`` to a routed query (bare sub-question or the full helper prompt)."""
    return reply_for_fact(profile, table.lookup(query_text), table, seed)


def simulated_answer(profile: CandidateProfile, query_text: str, table: KnowledgeTable, seed: int = 0) -> str:
    """Just the reply text (what an OpenAI-compatible server returns as ``message.content``)."""
    return simulated_reply(profile, query_text, table, seed).text


def find_candidate(profiles: Sequence[CandidateProfile], name_or_model_id: str) -> CandidateProfile:
    """The profile with this display name or API model id (case-insensitive)."""
    wanted = name_or_model_id.strip().lower()
    for profile in profiles:
        if wanted in (profile.name.lower(), profile.model_id.lower()):
            return profile
    raise KeyError(f"no simulated candidate named {name_or_model_id!r}; known: {[p.name for p in profiles]}")
