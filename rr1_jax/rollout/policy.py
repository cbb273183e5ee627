"""What the rollout worker drives: a batch of slots that decode in segments and take observations.

`EnginePolicy` wraps the jitted generation engine (`rr1_jax.generate.Sampler`: prefill, decode_segment with
in-jit stop strings, append); `ScriptedPolicy` replays given turns through the same interface so the worker's
control flow (turn limits, masks, routing, timing) can be tested and demonstrated without a trained model.
Both return host-side (NumPy / list) results; the worker never touches device arrays.

Interface (duck-typed):
    num_slots: int
    start(prompts, seed)     prefill slot b with prompts[b]; slots without a prompt stay inactive
                             (EnginePolicy: `slot_ids=` gives slot b the PRNG key of batch position slot_ids[b],
                             so a process rolling out part of a multi-host batch samples as one process would)
    decode(max_steps)        -> Segment: up to max_steps tokens per active slot; a slot stops at EOS, a stop
                             string, its per-turn token budget or a full cache, and stays stopped until resumed
    resume({slot: ids})      append each chosen slot's observation (possibly empty) and start its next turn
    restart({slot: ids})     re-prefill the listed slots with their whole context (all others become idle);
                             only called between turns, when no slot is mid-generation
"""
from __future__ import annotations

import time
from typing import Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

from rr1_jax.generate.buckets import pad_batch, pick_bucket
from rr1_jax.generate.sampler import Sampler, StopReason
from rr1_jax.generate.sampling import SamplingParams, slot_keys
from rr1_jax.generate.stops import DEFAULT_STOP_STRINGS, StopMatcher, token_bytes_from_tokenizer
from rr1_jax.model.tokenizer import stop_token_ids


class Segment(NamedTuple):
    """One decode call, per slot: the new tokens, their behaviour log-probs and why the slot stopped."""

    tokens: list[list[int]]  # [B] lists (empty for slots that did not run)
    logprobs: list[np.ndarray]  # [B] f32 arrays, same lengths
    stop_reason: np.ndarray  # [B] int StopReason; NONE = still generating (or idle)


class EnginePolicy:
    """The KV-cache engine over fixed slots; prompts and observations are padded to the given length buckets."""

    def __init__(self, sampler: Sampler, params, config, num_slots: int, cache_len: int, max_turn_tokens: int,
                 prompt_buckets: Sequence[int], obs_buckets: Sequence[int]):
        self.sampler, self.params, self.config = sampler, params, config
        self.num_slots, self.cache_len, self.max_turn_tokens = num_slots, cache_len, max_turn_tokens
        self.prompt_buckets = sorted(prompt_buckets)
        self.obs_buckets = sorted(obs_buckets)
        powers = [1 << k for k in range(6, cache_len.bit_length()) if (1 << k) < cache_len]
        self.context_buckets = sorted(set(self.prompt_buckets) | set(powers) | {cache_len})  # re-prefill widths
        self.state = None

    @property
    def pad_id(self) -> int:
        return self.sampler.pad_id

    def start(self, prompts: Sequence[Sequence[int]], seed: int = 0,
              slot_ids: Optional[Sequence[int]] = None) -> None:
        width = pick_bucket(max(len(p) for p in prompts), self.prompt_buckets)
        tokens, lengths = pad_batch(prompts, width, self.pad_id, "left", self.num_slots)  # [B, P], [B]
        self.state = self.sampler.init_state(self.config, self.num_slots, self.cache_len, seed=seed,
                                             turn_budget=self.max_turn_tokens)
        if slot_ids is not None:  # keys of a larger batch: slot_keys(seed, n)[i] does not depend on n
            if len(slot_ids) != self.num_slots:
                raise ValueError(f"slot_ids has {len(slot_ids)} entries for {self.num_slots} slots")
            keys = slot_keys(seed, max(slot_ids) + 1)[np.asarray(slot_ids)]
            if self.sampler.mesh is not None:
                keys = jax.device_put(keys, self.sampler.state_sharding(self.state).keys)
            self.state = self.state._replace(keys=keys)
        self.state = self.sampler.prefill(self.params, self.state, tokens, lengths)

    def decode(self, max_steps: int) -> Segment:
        self.state, out = self.sampler.decode_segment(self.params, self.state, max_steps)
        tokens, logprobs, counts, reasons = (np.asarray(x) for x in (out.tokens, out.logprobs, out.num_tokens,
                                                                      out.stop_reason))  # [B, K] x2, [B] x2
        active = np.asarray(self.state.active)
        reasons = np.where(active, int(StopReason.NONE), reasons)
        return Segment([tokens[b, :counts[b]].tolist() for b in range(self.num_slots)],
                       [logprobs[b, :counts[b]] for b in range(self.num_slots)], reasons)

    def resume(self, observations: Mapping[int, Sequence[int]]) -> None:
        rows = [list(observations.get(b, ())) for b in range(self.num_slots)]
        width = pick_bucket(max(len(r) for r in rows), self.obs_buckets)
        tokens, lengths = pad_batch(rows, width, self.pad_id, "right")  # [B, O], [B]
        chosen = np.array([b in observations for b in range(self.num_slots)])
        self.state = self.sampler.append(self.params, self.state, tokens, lengths, chosen)

    def restart(self, contexts: Mapping[int, Sequence[int]]) -> None:
        rows = [list(contexts.get(b, ())) for b in range(self.num_slots)]
        width = pick_bucket(max(len(r) for r in rows), self.context_buckets)
        # right-aligned: each slot's cache ends at its own context, so a wide bucket costs no cache room
        tokens, lengths = pad_batch(rows, width, self.pad_id, "right")
        self.state = self.sampler.prefill(self.params, self.state, tokens, lengths, align="right")


def engine_policy(graphdef, params, config, tokenizer, num_slots: int, max_turns: int, max_turn_tokens: int,
                  prompt_buckets: Sequence[int], obs_buckets: Sequence[int],
                  sampling: SamplingParams = SamplingParams.router_r1()) -> EnginePolicy:
    """An `EnginePolicy` for Router-R1 episodes: stops at `</search>` / `</answer>` / an EOS id, and a
    cache long enough for the longest prompt bucket, `max_turns + 1` full generations and `max_turns`
    observations of the largest observation bucket."""
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs pad and EOS tokens (set tokenizer.pad_token, e.g. to the EOS token)")
    stop = StopMatcher.build(DEFAULT_STOP_STRINGS, token_bytes_from_tokenizer(tokenizer))
    if stop.table.shape[1] > config.vocab_size:
        raise ValueError(f"tokenizer has {stop.table.shape[1]} ids but the model only {config.vocab_size}; load "
                         f"the tokenizer that belongs to the model")
    if stop.table.shape[1] < config.vocab_size:  # ids the tokenizer lacks (padded embeddings) never match
        pad = np.repeat(np.arange(stop.num_states, dtype=np.int16)[:, None], config.vocab_size - stop.table.shape[1],
                        axis=1)
        stop = StopMatcher(stop.strings, np.concatenate([stop.table, pad], axis=1), stop.num_states)
    sampler = Sampler(graphdef, sampling, stop=stop, eos_ids=stop_token_ids(tokenizer, config),
                      pad_id=tokenizer.pad_token_id)
    cache_len = max(prompt_buckets) + (max_turns + 1) * max_turn_tokens + max_turns * max(obs_buckets)
    return EnginePolicy(sampler, params, config, num_slots, cache_len, max_turn_tokens, prompt_buckets, obs_buckets)


class ScriptedPolicy:
    """Replays `scripts[b][g]` as slot b's g-th generation (ids); `contexts[b]` records what the slot has seen.

    A generation ends with EOS if its last id is in `eos_ids`, with BUDGET if it is longer than
    `max_turn_tokens` (cut there), else with STOP_STRING. Asking for a generation past the script yields no
    tokens and EOS. `step_time_s` sleeps per decode step (the longest slot's tokens), to stand in for device time.
    """

    def __init__(self, scripts: Sequence[Sequence[Sequence[int]]], eos_ids: Sequence[int] = (),
                 max_turn_tokens: int = 1024, step_time_s: float = 0.0, logprob: float = -1.0):
        self.scripts = [[list(turn) for turn in slot] for slot in scripts]
        self.num_slots = len(self.scripts)
        self.eos_ids, self.max_turn_tokens = set(eos_ids), max_turn_tokens
        self.step_time_s, self.logprob = step_time_s, logprob
        self.contexts: list[list[int]] = [[] for _ in range(self.num_slots)]
        self._generation = [0] * self.num_slots
        self._position = [0] * self.num_slots
        self._active = np.zeros(self.num_slots, bool)
        self.decode_calls = 0

    def start(self, prompts: Sequence[Sequence[int]], seed: int = 0) -> None:
        for b in range(self.num_slots):
            prompt = list(prompts[b]) if b < len(prompts) else []
            self.contexts[b], self._generation[b], self._position[b] = prompt, 0, 0
            self._active[b] = bool(prompt)

    def _turn(self, b: int) -> list[int]:
        script = self.scripts[b]
        return script[self._generation[b]] if self._generation[b] < len(script) else []

    def decode(self, max_steps: int) -> Segment:
        self.decode_calls += 1
        tokens, reasons = [[] for _ in range(self.num_slots)], np.zeros(self.num_slots, np.int32)
        for b in np.flatnonzero(self._active):
            turn = self._turn(b)[:self.max_turn_tokens]
            start = self._position[b]
            tokens[b] = turn[start:start + max_steps]
            self._position[b] += len(tokens[b])
            self.contexts[b].extend(tokens[b])
            if self._position[b] >= len(turn):
                self._active[b] = False
                full = self._turn(b)
                if not full or full[-1] in self.eos_ids and len(full) <= self.max_turn_tokens:
                    reasons[b] = StopReason.EOS
                elif len(full) > self.max_turn_tokens:
                    reasons[b] = StopReason.BUDGET
                else:
                    reasons[b] = StopReason.STOP_STRING
        time.sleep(self.step_time_s * max((len(t) for t in tokens), default=0))
        return Segment(tokens, [np.full(len(t), self.logprob, np.float32) for t in tokens], reasons)

    def resume(self, observations: Mapping[int, Sequence[int]]) -> None:
        for b, ids in observations.items():
            self.contexts[b].extend(ids)
            self._next_turn(b)

    def restart(self, contexts: Mapping[int, Sequence[int]]) -> None:
        self._active[:] = False
        for b, ids in contexts.items():
            self.contexts[b] = list(ids)
            self._next_turn(b)

    def _next_turn(self, b: int) -> None:
        self._generation[b] += 1
        self._position[b] = 0
        self._active[b] = True

    def generations(self, b: int) -> Optional[int]:
        """How many generations slot b has started (tests)."""
        return self._generation[b] + 1 if self.contexts[b] else None
