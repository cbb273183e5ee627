"""Parsing one policy turn into an action: answer, route `(model name, query)`, or invalid.

Upstream rules (`postprocess_predictions`, spec/router-r1.md §5.4): the *first* match of
`<(search|answer)>(.*?)</\\1>` (DOTALL) decides; no match is "no action". A search whose stripped content
  1. contains `llm-name` or `your-query` (case-insensitive: the placeholders) is `invalid-1`,
  2. has no `:` is `invalid-2`,
  3. has an empty query is `invalid-3`;
anything else is routed, even with an unknown model name (the pool then answers with the failure observation).

Deliberate difference (`split="first"`, the default): the model name is the text before the *first* colon and the
query is everything after it, stripped. Upstream (`split="upstream"`) sends only the text between the first and
second colon, unstripped (`content.split(':')[1]`), silently dropping e.g. the `30` of "ratio 3:30?", and its
invalid-3 test looks at the text after the *last* colon. Either way such a route still fails upstream's format
reward (exactly one colon), so only the observation differs.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from rr1_jax.rollout.candidates import Candidate, CandidatePool

ACTION_KINDS = ("answer", "route", "invalid")
SPLIT_MODES = ("first", "upstream")
_ACTION_RE = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
_PLACEHOLDERS = ("llm-name", "your-query")


@dataclasses.dataclass(frozen=True)
class Action:
    """One parsed turn. `reason` says why an action is invalid: no-action, invalid-1, invalid-2, invalid-3."""

    kind: str  # one of ACTION_KINDS
    content: str = ""  # stripped text inside the first <search>/<answer> block ("" for no action)
    model_name: Optional[str] = None  # route only: the name as written (stripped)
    query: Optional[str] = None  # route only: the text sent inside the helper prompt
    reason: Optional[str] = None  # invalid only

    @property
    def is_route(self) -> bool:
        return self.kind == "route"


def parse_action(text: str, split: str = "first") -> Action:
    """The action of one turn's text (already cut at its stop string). Never raises on any text."""
    if split not in SPLIT_MODES:
        raise ValueError(f"split mode {split!r} is unknown; choose one of {SPLIT_MODES}")
    match = _ACTION_RE.search(text)
    if match is None:
        return Action("invalid", reason="no-action")
    tag, content = match.group(1), match.group(2).strip()
    if tag == "answer":
        return Action("answer", content=content)
    lowered = content.lower()
    if any(p in lowered for p in _PLACEHOLDERS):
        return Action("invalid", content=content, reason="invalid-1")
    if ":" not in content:
        return Action("invalid", content=content, reason="invalid-2")
    name = content.split(":", 1)[0].strip()
    if split == "upstream":
        if not lowered.split(":")[-1].strip():
            return Action("invalid", content=content, reason="invalid-3")
        query = content.split(":")[1]
    else:
        query = content.split(":", 1)[1].strip()
        if not query:
            return Action("invalid", content=content, reason="invalid-3")
    return Action("route", content=content, model_name=name, query=query)


def resolve_route(action: Action, pool: CandidatePool, mode: str = "exact") -> Optional[Candidate]:
    """The candidate a route action names (`CandidatePool.resolve`), or None (not a route, or unknown name)."""
    if not action.is_route or action.model_name is None:
        return None
    return pool.resolve(action.model_name, mode)
