"""Router-R1 rewards: answer extraction, EM/F1, the strict format gate, the rolling cost normaliser, their blend.

Pure Python/NumPy and free of global state: the cost normaliser is an explicit, checkpointable object.
Every function sees the *response* only (prompt excluded), as upstream's reward manager does.
"""
from __future__ import annotations

import collections
import math
import re
import string
from typing import Iterable, Sequence

import numpy as np

from rr1_jax.rollout.candidates import ROUTER_R1_POOL, CandidatePool

FORMAT_OK = 0.0
FORMAT_BAD = -1.0  # upstream's three penalty constants are all -1, so the gate is binary
FORMAT_TAGS = ("search", "answer", "think", "information")
_TAG_STRINGS = tuple(s for t in FORMAT_TAGS for s in (f"<{t}>", f"</{t}>"))
_BLOCK_RE = re.compile(r"<(search|answer|think|information)>(.*?)</\1>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_PLACEHOLDERS = ("llm-name", "your-query")
_F1_SPECIAL = ("yes", "no", "noanswer")
METRICS = ("em", "f1")
REWARD_FORMS = ("hierarchical", "additive")


# ----------------------------------------------------------------------------------------------- answers

def extract_answer(response: str) -> str | None:
    """The stripped text of the LAST ``<answer>…</answer>`` in the response (None if there is none).

    As upstream, an answer inside an ``<information>`` block counts too.
    """
    matches = _ANSWER_RE.findall(response)
    return matches[-1].strip() if matches else None


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop ASCII punctuation, drop articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def _golden_list(golden_answers: str | Iterable[str]) -> list[str]:
    if isinstance(golden_answers, str):
        return [golden_answers]
    golds = list(golden_answers)
    if not all(isinstance(g, str) for g in golds):
        raise TypeError(f"golden_answers must be a string or a list of strings, got {golden_answers!r}")
    return golds


def exact_match(prediction: str | None, golden_answers: str | Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised golden answer, else 0.0 (None scores 0)."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(g) == pred for g in _golden_list(golden_answers)))


def substring_match(prediction: str | None, golden_answers: str | Iterable[str]) -> float:
    """1.0 if any normalised golden answer occurs inside the normalised prediction, else 0.0."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(g) in pred for g in _golden_list(golden_answers)))


def _token_f1(pred: str, gold: str) -> float:
    if (pred in _F1_SPECIAL or gold in _F1_SPECIAL) and pred != gold:
        return 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str | None, golden_answers: str | Iterable[str]) -> float:
    """Token-level F1 of normalised answers, max over golden answers; yes/no/noanswer must match exactly."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return max((_token_f1(pred, normalize_answer(g)) for g in _golden_list(golden_answers)), default=0.0)


# ----------------------------------------------------------------------------------------------- format

def _route_flags(content: str, pool: CandidatePool) -> tuple[bool, bool]:
    """(query_format_bad, llm_name_bad) for the stripped content of one ``<search>`` block, as upstream."""
    if content.count(":") != 1:
        return True, False
    name, query = content.split(":")
    name_key, query_key = name.strip().lower(), query.strip().lower()
    query_bad = (query.strip() == "" or any(p in content.lower() for p in _PLACEHOLDERS)
                 or name_key in query_key)  # the name repeated in the query; an empty name always "repeats"
    name_bad = pool.resolve(name_key, mode="upstream") is None
    return query_bad, name_bad


def format_reward(response: str, pool: CandidatePool | None = None) -> float:
    """0.0 if the response obeys every upstream format rule, else -1.0 (rules checked in upstream order).

    Rules: some tag block exists; every tag is balanced; no ``<think>`` is empty or "..."; no block contains a
    tag string; exactly one answer, at least one think, one information block per search; starts with
    ``<think>``; ends with ``</answer>``; each route is ``Name: query`` with exactly one colon, a non-empty,
    non-placeholder query not containing the name; and each name resolves in ``pool`` (upstream resolution).
    Deliberate difference: names upstream maps but cannot price (Nemotron-51B/49B, Granite) are invalid here,
    as they are not in the pool; upstream accepts them here and then crashes when pricing the call.
    """
    pool = ROUTER_R1_POOL if pool is None else pool
    blocks = _BLOCK_RE.findall(response)
    if not blocks:
        return FORMAT_BAD
    if any(response.count(f"<{t}>") != response.count(f"</{t}>") for t in FORMAT_TAGS):
        return FORMAT_BAD
    counts = collections.Counter()
    query_bad = name_bad = think_bad = nesting_bad = False
    for tag, raw in blocks:
        content = raw.strip()
        counts[tag] += 1
        if tag == "search":
            q_bad, n_bad = _route_flags(content, pool)
            query_bad, name_bad = query_bad or q_bad, name_bad or n_bad
        elif tag == "think" and content in ("...", ""):
            think_bad = True
        if any(s in content for s in _TAG_STRINGS):
            nesting_bad = True
    if think_bad or nesting_bad:
        return FORMAT_BAD
    if counts["answer"] != 1 or counts["think"] == 0 or counts["search"] != counts["information"]:
        return FORMAT_BAD
    stripped = response.strip()
    if not stripped.startswith("<think>") or not stripped.endswith("</answer>"):
        return FORMAT_BAD
    if query_bad or name_bad:
        return FORMAT_BAD
    return FORMAT_OK


def route_count(response: str, pool: CandidatePool | None = None) -> int:
    """Number of well-formed routes, counted as upstream's validation ``route_cnt`` does.

    A route counts if it has exactly one colon, a non-empty non-placeholder query and a valid name (no
    name-in-query rule). As upstream, the flags are never reset: counting stops at the first bad route.
    Routes are the ``<search>`` blocks of the same tag walk as ``format_reward``.
    """
    pool = ROUTER_R1_POOL if pool is None else pool
    count = 0
    for tag, raw in _BLOCK_RE.findall(response):
        if tag != "search":
            continue
        content = raw.strip()
        if content.count(":") != 1:
            break
        name, query = content.split(":")
        if query.strip() == "" or any(p in content.lower() for p in _PLACEHOLDERS):
            break
        if pool.resolve(name, mode="upstream") is None:
            break
        count += 1
    return count


# ----------------------------------------------------------------------------------------------- cost

class CostNormalizer:
    """Upstream's rolling percentile cost normaliser as an explicit object: cost -> cost reward in [0, 1].

    Each call transforms the cost (sqrt by default), appends it to a window of the last ``window`` values, and
    returns ``1 - clip((x - lo) / (hi - lo), 0, 1)`` with lo/hi the ``q_low``/``q_high`` percentiles of the window
    (current value included; min/max while it holds one value; 0.5 while hi - lo < 1e-8). Cheaper -> closer to 1.
    Call it once per sample in batch order; results depend on that order, exactly as upstream.

    Upstream keeps ONE module-global buffer shared by training and validation and never resets it. Here each
    instance has its own window: use separate instances for train and eval (the default intent), or pass the
    same instance to both to reproduce upstream's shared behaviour. ``state_dict()`` is JSON-able.
    """

    TRANSFORMS = ("sqrt", "identity")
    DEGENERATE_RANGE = 1e-8

    def __init__(self, window: int = 1000, q_low: float = 0.05, q_high: float = 0.95, transform: str = "sqrt"):
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"CostNormalizer window must be a positive int, got {window!r}")
        if not 0.0 <= q_low < q_high <= 1.0:
            raise ValueError(f"CostNormalizer needs 0 <= q_low < q_high <= 1, got q_low={q_low}, q_high={q_high}")
        if transform not in self.TRANSFORMS:
            raise ValueError(f"CostNormalizer transform must be one of {self.TRANSFORMS}, got {transform!r}")
        self.window, self.q_low, self.q_high, self.transform = window, float(q_low), float(q_high), transform
        self._buffer: collections.deque[float] = collections.deque(maxlen=window)

    def __call__(self, cost: float) -> float:
        """The cost reward of one episode's dollar-weighted cost (sum of completion_tokens x $/1M)."""
        cost = float(cost)
        if not math.isfinite(cost) or cost < 0:
            raise ValueError(f"cost must be a finite number >= 0, got {cost!r}")
        value = math.sqrt(cost) if self.transform == "sqrt" else cost
        self._buffer.append(value)
        values = np.asarray(self._buffer, dtype=np.float64)
        if len(values) >= 2:
            lo, hi = np.percentile(values, [100 * self.q_low, 100 * self.q_high])
        else:
            lo, hi = values.min(), values.max()
        if hi - lo < self.DEGENERATE_RANGE:
            return 0.5
        return float(1.0 - np.clip((value - lo) / (hi - lo), 0.0, 1.0))

    def normalize_batch(self, costs: Iterable[float]) -> list[float]:
        """Calls the normaliser on each cost in order (sample j sees samples 0..j of this batch)."""
        return [self(c) for c in costs]

    def __len__(self) -> int:
        return len(self._buffer)

    def state_dict(self) -> dict:
        """JSON-able state: the configuration and the window contents (oldest first)."""
        return {"window": self.window, "q_low": self.q_low, "q_high": self.q_high, "transform": self.transform,
                "buffer": [float(v) for v in self._buffer]}

    def load_state_dict(self, state: dict) -> None:
        """Restores the window; the saved configuration must match this instance's."""
        for key in ("window", "q_low", "q_high", "transform"):
            if key not in state:
                raise ValueError(f"CostNormalizer state is missing {key!r}")
            if state[key] != getattr(self, key):
                raise ValueError(f"CostNormalizer state has {key}={state[key]!r} but this normaliser has "
                                 f"{key}={getattr(self, key)!r}; build it with the saved configuration")
        buffer = [float(v) for v in state.get("buffer", [])]
        if len(buffer) > self.window:
            raise ValueError(f"CostNormalizer state holds {len(buffer)} values, more than window={self.window}")
        self._buffer = collections.deque(buffer, maxlen=self.window)


# ----------------------------------------------------------------------------------------------- blend

def route_reward(response: str, golden_answers: str | Sequence[str], cost_reward: float, alpha: float,
                 pool: CandidatePool | None = None, metric: str = "em", form: str = "hierarchical") -> float:
    """The scalar training reward of one response.

    ``form="hierarchical"`` (upstream code, default): -1 if the format is bad; else 0 if the answer is wrong
    (EM=0, or F1=0 with ``metric="f1"``); else ``(1-α)·score + α·cost_reward`` — the cost term is paid only
    for correct answers. ``form="additive"`` is the paper's formula ``R_format + (1-α)·score + α·cost_reward``,
    which also pays the cost term to wrong or badly formatted answers.
    """
    if metric not in METRICS:
        raise ValueError(f"reward metric must be one of {METRICS}, got {metric!r}")
    if form not in REWARD_FORMS:
        raise ValueError(f"reward form must be one of {REWARD_FORMS}, got {form!r}")
    alpha, cost_reward = float(alpha), float(cost_reward)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (cost coefficient) must be in [0, 1], got {alpha}")
    if not math.isfinite(cost_reward):
        raise ValueError(f"cost_reward must be finite, got {cost_reward}")
    fmt = format_reward(response, pool)
    answer = extract_answer(response)
    score = exact_match(answer, golden_answers) if metric == "em" else f1_score(answer, golden_answers)
    if form == "additive":
        return fmt + (1.0 - alpha) * score + alpha * cost_reward
    if fmt != FORMAT_OK:
        return FORMAT_BAD
    if score <= 0.0:
        return 0.0
    return (1.0 - alpha) * score + alpha * cost_reward


def scheduled_alpha(alpha: float, step: int, early_alpha: float = 0.0, early_steps: int = 0) -> float:
    """The cost coefficient of PPO iteration ``step`` (0-based): ``early_alpha`` for the first ``early_steps``
    iterations, then ``alpha``.

    A cost-first curriculum: under a high early alpha each cheap specialist wins its own domain before the
    candidate right most often on average (and expensive) can take every domain; ``alpha`` then decides the rest.
    """
    for name, value in (("alpha", alpha), ("early_alpha", early_alpha)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"reward.{name} (cost coefficient) must be in [0, 1], got {value}")
    if int(early_steps) != early_steps or early_steps < 0:
        raise ValueError(f"reward.early_steps must be a whole number >= 0 (0: no curriculum), got {early_steps}")
    return float(early_alpha if step < early_steps else alpha)
