"""The candidate pool as data: which LLMs the router may call, their API ids, prices and how names resolve.

No HTTP here (the async client lives in ``pool.py``); this module only defines the candidates and maps a
name written by the policy (``<search> Name: query </search>``) to one of them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

NVIDIA_NIM_BASE_URL = "https://integrate.api.nvidia.com/v1"
NVIDIA_NIM_KEY_ENV = "NVIDIA_API_KEY"
RESOLVE_MODES = ("exact", "upstream")


@dataclass(frozen=True)
class Candidate:
    """One routable LLM: its name as shown to the policy, where and how to call it, and what it costs.

    Prices are US dollars per 1M tokens. ``api_key_env`` is the NAME of the environment variable holding the
    key, never the key itself, so a Candidate can be logged, checkpointed and compared safely.
    """

    name: str                     # display name the policy writes, e.g. "Qwen2.5-7B-Instruct"
    model_id: str                 # API model id sent in the request, e.g. "qwen/qwen2.5-7b-instruct"
    base_url: str                 # OpenAI-compatible endpoint
    api_key_env: str              # environment variable NAME that holds the API key
    output_price_per_1m: float    # $ per 1M completion tokens (the only tokens upstream's cost counts)
    input_price_per_1m: float = 0.0  # $ per 1M prompt tokens (upstream ignores prompt tokens)
    description: str = ""         # capability text shown to the policy in the prompt
    temperature: float = 0.0      # sampling temperature of the routed call (upstream TAU)
    max_tokens: int = 512         # completion cap of the routed call

    def __post_init__(self):
        for field in ("name", "model_id", "base_url", "api_key_env"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Candidate.{field} must be a non-empty string, got {value!r}")
        for field in ("output_price_per_1m", "input_price_per_1m", "temperature"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"Candidate {self.name!r}: {field} must be a number >= 0, got {value!r}")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens <= 0:
            raise ValueError(f"Candidate {self.name!r}: max_tokens must be a positive int, got {self.max_tokens!r}")


# Upstream `check_llm_name` (route_service.py), in upstream order: the first rule whose substring test passes on
# the stripped, lower-cased name decides, and later rules are never tried. Each rule names the upstream API id and
# the display name we use for that model; a pool candidate matches a rule by either.
_UpstreamRule = tuple[Callable[[str], bool], str, str]
UPSTREAM_NAME_RULES: tuple[_UpstreamRule, ...] = (
    (lambda s: "qwen" in s, "qwen/qwen2.5-7b-instruct", "Qwen2.5-7B-Instruct"),
    (lambda s: "palmyra" in s or "creative" in s, "writer/palmyra-creative-122b", "Palmyra-Creative-122B"),
    (lambda s: "llama" in s and "70b" in s, "meta/llama-3.1-70b-instruct", "LLaMA-3.1-70B-Instruct"),
    (lambda s: "llama" in s and "51b" in s, "nvidia/llama-3.1-nemotron-51b-instruct",
     "LLaMA-3.1-Nemotron-51B-Instruct"),
    (lambda s: "llama" in s and "49b" in s, "nvidia/llama-3.3-nemotron-super-49b-v1",
     "LLaMA-3.3-Nemotron-Super-49B"),
    (lambda s: "llama" in s and "8b" in s and "chatqa" in s, "nvidia/llama3-chatqa-1.5-8b", "LLaMA3-ChatQA-1.5-8B"),
    (lambda s: "llama" in s and "8b" in s, "meta/llama-3.1-8b-instruct", "LLaMA-3.1-8B-Instruct"),
    (lambda s: "llama" in s, "", ""),  # any other llama (e.g. "llama-3.2-3b") is an invalid name upstream
    (lambda s: "mistral" in s, "mistralai/mistral-7b-instruct-v0.3", "Mistral-7B-Instruct"),
    (lambda s: "mixtral" in s, "mistralai/mixtral-8x22b-instruct-v0.1", "Mixtral-8x22B-Instruct"),
    (lambda s: "granite" in s, "ibm/granite-3.0-8b-instruct", "Granite-3.0-8B-Instruct"),
    (lambda s: "gemma" in s, "google/gemma-2-27b-it", "Gemma-2-27B-Instruct"),
)


def _normalise_name(name: str) -> str:
    return name.strip().lower()


class CandidatePool:
    """An ordered, immutable set of candidates with name resolution.

    ``resolve(name, "exact")`` matches display names case-insensitively after strip. ``resolve(name, "upstream")``
    reproduces upstream's substring rules (``UPSTREAM_NAME_RULES``) and then looks the chosen model up in this
    pool. Deliberate difference from upstream: a rule whose model is not in the pool (Nemotron-51B/49B, Granite
    in the default pool — upstream maps them but has no price and crashes with ``KeyError``) resolves to None, i.e.
    an invalid name, instead of crashing the training step.
    """

    def __init__(self, candidates: Iterable[Candidate]):
        self._candidates: tuple[Candidate, ...] = tuple(candidates)
        if not self._candidates:
            raise ValueError("CandidatePool needs at least one candidate")
        by_name: dict[str, Candidate] = {}
        for cand in self._candidates:
            if not isinstance(cand, Candidate):
                raise TypeError(f"CandidatePool takes Candidate objects, got {type(cand).__name__}")
            key = _normalise_name(cand.name)
            if key in by_name:
                raise ValueError(f"duplicate candidate name {cand.name!r} (names are case-insensitive)")
            by_name[key] = cand
        self._by_name = by_name

    @classmethod
    def from_config(cls, entries: Sequence[Mapping[str, object]]) -> "CandidatePool":
        """Builds a pool from a list of dicts with Candidate's field names; names the bad field on error."""
        fields = {f.name: f for f in dataclasses.fields(Candidate)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        candidates = []
        for position, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ValueError(f"candidate #{position} must be a dict of {sorted(fields)}, "
                                 f"got {type(entry).__name__}")
            label = f"candidate #{position} ({entry.get('name', '?')!r})"
            unknown = sorted(set(entry) - set(fields))
            if unknown:
                raise ValueError(f"{label}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}")
            missing = [n for n in required if n not in entry]
            if missing:
                raise ValueError(f"{label}: missing required key(s) {missing}")
            try:
                candidates.append(Candidate(**dict(entry)))
            except ValueError as err:
                raise ValueError(f"{label}: {err}") from None
        return cls(candidates)

    def to_config(self) -> list[dict]:
        """The inverse of ``from_config`` (JSON-able; contains env-var names, never keys)."""
        return [dataclasses.asdict(c) for c in self._candidates]

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return self._candidates

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self._candidates)

    def missing_key_vars(self) -> list[str]:
        """The API-key environment variables the candidates name that are not set (sorted, each once)."""
        return sorted({c.api_key_env for c in self._candidates if not os.environ.get(c.api_key_env)})

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._candidates)

    def __len__(self) -> int:
        return len(self._candidates)

    def __repr__(self) -> str:
        return f"CandidatePool({list(self.names)})"

    def resolve(self, name: str, mode: str = "exact") -> Candidate | None:
        """The candidate a policy-written model name refers to, or None when the name is invalid."""
        if mode not in RESOLVE_MODES:
            raise ValueError(f"resolve mode must be one of {RESOLVE_MODES}, got {mode!r}")
        if not isinstance(name, str):
            return None
        key = _normalise_name(name)
        if mode == "exact":
            return self._by_name.get(key)
        for matches, model_id, display_name in UPSTREAM_NAME_RULES:
            if matches(key):
                return self._find_upstream_model(model_id, display_name) if model_id else None
        return None

    def _find_upstream_model(self, model_id: str, display_name: str) -> Candidate | None:
        for cand in self._candidates:
            if cand.model_id == model_id:
                return cand
        return self._by_name.get(_normalise_name(display_name))


def _nim(name, model_id, price, description, temperature=0.0):
    # Together-AI list prices (upstream README) are the same for input and output tokens for these models, so the
    # input price equals the output price; upstream's cost only counts output tokens anyway.
    return Candidate(name=name, model_id=model_id, base_url=NVIDIA_NIM_BASE_URL, api_key_env=NVIDIA_NIM_KEY_ENV,
                     output_price_per_1m=price, input_price_per_1m=price, description=description,
                     temperature=temperature, max_tokens=512)


# Descriptions of the six training candidates are exactly the prompt's (spec §4.1). The two "unseen" models are
# not described in upstream's prompt; their descriptions here are ours.
ROUTER_R1_POOL = CandidatePool([
    _nim("Qwen2.5-7B-Instruct", "qwen/qwen2.5-7b-instruct", 0.30,
         "Qwen2.5-7B-Instruct is a powerful Chinese-English instruction-tuned large language model designed for "
         "tasks in language, coding, mathematics, and reasoning. As part of the Qwen2.5 series, it features enhanced "
         "knowledge, stronger coding and math abilities, improved instruction following, better handling of long and "
         "structured texts, and supports up to 128K context tokens. It also offers multilingual capabilities across "
         "over 29 languages."),
    _nim("LLaMA-3.1-8B-Instruct", "meta/llama-3.1-8b-instruct", 0.18,
         "LLaMA-3.1-8B-Instruct is an 8-billion-parameter instruction-tuned language model optimized for "
         "multilingual dialogue. It provides strong language understanding, reasoning, and text generation "
         "performance, outperforming many open-source and closed-source models on standard industry benchmarks."),
    _nim("LLaMA-3.1-70B-Instruct", "meta/llama-3.1-70b-instruct", 0.88,
         "LLaMA-3.1-70B-Instruct is a 70-billion-parameter state-of-the-art language model designed for advanced "
         "multilingual dialogue tasks. It excels in language comprehension, complex reasoning, and high-quality text "
         "generation, setting a new standard against both open and closed models in benchmark evaluations."),
    _nim("Mistral-7B-Instruct", "mistralai/mistral-7b-instruct-v0.3", 0.20,
         "Mistral-7B-Instruct is a fine-tuned version of the Mistral-7B-v0.3 language model designed to follow "
         "instructions, complete user requests, and generate creative text. It was trained on diverse public "
         "conversation datasets to enhance its ability to handle interactive tasks effectively."),
    _nim("Mixtral-8x22B-Instruct", "mistralai/mixtral-8x22b-instruct-v0.1", 1.20,
         "Mixtral-8x22B-Instruct is a cutting-edge sparse Mixture-of-Experts (SMoE) large language model from "
         "MistralAI. It efficiently uses 39B active parameters out of 141B total, delivering high performance at "
         "lower costs. The model excels at following instructions, completing tasks, and generating creative text, "
         "with strong skills in multiple languages (English, French, Italian, German, Spanish), mathematics, and "
         "coding. It also supports native function calling and handles long contexts up to 64K tokens for better "
         "information recall."),
    _nim("Gemma-2-27B-Instruct", "google/gemma-2-27b-it", 0.80,
         "Gemma-2-27B-Instruct is a cutting-edge, instruction-tuned text generation model developed by Google. Built "
         "using the same technology as Gemini, it excels at text understanding, transformation, and code generation. "
         "As a lightweight, decoder-only model with open weights, it is ideal for tasks like question answering, "
         "summarization, and reasoning. Its compact size enables deployment on laptops, desktops, or private cloud "
         "setups, making powerful AI more accessible.", temperature=0.1),
    # Unseen at training time (generalisation experiment); priced as in upstream's price table.
    _nim("Palmyra-Creative-122B", "writer/palmyra-creative-122b", 1.80,
         "Palmyra-Creative-122B is a 122-billion-parameter model from Writer tuned for creative writing, "
         "brainstorming and open-ended text generation."),
    _nim("LLaMA3-ChatQA-1.5-8B", "nvidia/llama3-chatqa-1.5-8b", 0.18,
         "LLaMA3-ChatQA-1.5-8B is an 8-billion-parameter NVIDIA model built on Llama 3 and tuned for conversational "
         "question answering and retrieval-augmented generation over provided context."),
])

# The six models listed to the policy in upstream's prompt (the training pool), in prompt order.
ROUTER_R1_TRAIN_NAMES = ROUTER_R1_POOL.names[:6]
