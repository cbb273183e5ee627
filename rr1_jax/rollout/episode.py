"""Host-side records of a rollout: per-slot state while it runs, and what is reported per episode afterwards."""
from __future__ import annotations

import dataclasses
from typing import Optional

from rr1_jax.rollout.pool import Budget, RouteResult
from rr1_jax.rollout.trajectory import Trajectories


@dataclasses.dataclass
class RouteRecord:
    """One routed call as the episode saw it."""

    generation: int  # 1-based generation that emitted the route
    model_name: Optional[str]  # as written by the policy
    candidate: Optional[str]  # resolved candidate (None: unknown name)
    query: str
    response: Optional[str]  # the reply (None: failed or refused)
    error: Optional[str]
    completion_tokens: int
    prompt_tokens: int
    cost: float  # upstream unit: completion_tokens × $/1M
    dollars: float
    latency_s: float
    cached: bool
    attempts: int
    observation_tokens: int  # tokens appended (after truncation)
    truncated: bool  # the observation was cut to max_obs_length

    @classmethod
    def from_result(cls, generation: int, model_name: Optional[str], result: RouteResult, obs_tokens: int,
                    truncated: bool) -> "RouteRecord":
        return cls(generation, model_name, result.candidate, result.query, result.content, result.error,
                   result.completion_tokens, result.prompt_tokens, result.cost, result.dollars, result.latency_s,
                   result.cached, result.attempts, obs_tokens, truncated)


@dataclasses.dataclass
class EpisodeInfo:
    """Everything about one row that is not a tensor (rewards read `response_text` and `cost`)."""

    response_text: str = ""  # the decoded response: every policy turn and observation
    routes: list = dataclasses.field(default_factory=list)  # [RouteRecord] in call order
    cost: float = 0.0  # Σ route costs (upstream unit), the input of the cost reward
    dollars: float = 0.0
    num_generations: int = 0
    actions: list = dataclasses.field(default_factory=list)  # per generation: answer / route / route-unanswered /
    # no-action / invalid-1 / invalid-2 / invalid-3
    stop_reasons: list = dataclasses.field(default_factory=list)  # per generation: STOP_STRING / EOS / BUDGET / ...
    finished: str = ""  # answer / eos / turn-limit / cache-full
    response_cut: bool = False  # the response was longer than `max_response_tokens`: its tail is not trained or read

    @property
    def num_routes(self) -> int:
        return len(self.routes)


@dataclasses.dataclass
class RolloutTiming:
    wall_s: float = 0.0
    device_s: float = 0.0  # time in prefill / decode / append calls
    append_s: float = 0.0  # of which appending observations (or re-prefilling contexts)
    appends: int = 0
    exposed_wait_s: float = 0.0  # time the host waited on calls with nothing to decode
    call_busy_s: float = 0.0  # time with at least one call in flight
    segments: int = 0

    @property
    def hidden_fraction(self) -> float:
        """Share of call time overlapped with decoding (1: fully hidden, 0: fully exposed)."""
        return 0.0 if self.call_busy_s <= 0 else max(0.0, 1.0 - self.exposed_wait_s / self.call_busy_s)


@dataclasses.dataclass
class RolloutResult:
    trajectories: Trajectories  # rows beyond len(episodes) only pad the slots (row_valid False)
    episodes: list  # [EpisodeInfo] per prompt
    timing: RolloutTiming


class SlotState:
    """One slot while the rollout runs: its tokens so far and where it is in the turn cycle."""

    def __init__(self, prompt: list, budget: Optional[Budget]):
        self.prompt, self.budget = prompt, budget
        self.response: list[int] = []
        self.policy_flags: list[bool] = []
        self.logprobs: list[float] = []
        self.turn_ids: list[int] = []
        self.turn_logprobs: list[float] = []
        self.status = "decoding"  # decoding / waiting (call in flight) / ready (observation pending) / done
        self.pending_obs: list[int] = []
        self.info = EpisodeInfo()

    def commit_generation(self, ids: list, logprobs: list, stop_reason: str) -> None:
        self.response += ids
        self.policy_flags += [True] * len(ids)
        self.logprobs += logprobs
        self.turn_ids, self.turn_logprobs = [], []
        self.info.num_generations += 1
        self.info.stop_reasons.append(stop_reason)

    def take_observation(self, ids: list) -> None:
        self.response += ids
        self.policy_flags += [False] * len(ids)
        self.logprobs += [0.0] * len(ids)
        self.pending_obs = []

    def finish(self, how: str) -> None:
        self.status, self.info.finished = "done", how
