"""Evaluate a policy on a QA set through the real multi-turn rollout against a candidate pool.

`load_policy` turns a spec (HF directory, `.gguf`, `bundled:smollm2`, or `tiny` = a random 2-layer model whose
vocabulary matches the tokenizer) into graphdef + params + tokenizer. `PolicyEvaluator` runs questions in
batches of `num_slots` through `rr1_jax.rollout.worker.rollout` (the same loop training uses) with one prompt
template, under greedy or upstream-style sampled decoding (T=1, top-p 0.95; upstream's evaluation is sampled,
spec/router-r1.md §9.3), over one or more seeds, and scores every episode (rr1_jax/eval/scoring.py). Each
(method, seed) gets a fresh `CostNormalizer`, so the reported reward does not depend on other rows.

One engine per decoding rule is built lazily and reused by every method, so each jitted program compiles once:
prompts are padded to a single bucket holding the longest prompt of the whole evaluation, observations to a
single bucket of `max_obs_length`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rr1_jax.data.qa import QARecord
from rr1_jax.eval.report import GREEDY, SAMPLED, MethodResult
from rr1_jax.eval.scoring import score_policy_episode
from rr1_jax.generate.buckets import round_up
from rr1_jax.generate.sampling import SamplingParams
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import WeightsError
from rr1_jax.model.tokenizer import check_tokenizer_matches, load_tokenizer
from rr1_jax.model.transformer import abstract_model
from rr1_jax.model.weights import load_model, resolve_model_path
from rr1_jax.rl.rewards import CostNormalizer
from rr1_jax.rollout.policy import engine_policy
from rr1_jax.rollout.pool import PoolClient
from rr1_jax.rollout.prompts import render_prompt, routing_template_for
from rr1_jax.rollout.worker import RolloutConfig, rollout
from rr1_jax.run_export import load_run_policy, run_location

TINY = "tiny"
DECODINGS = {GREEDY: SamplingParams(greedy=True), SAMPLED: SamplingParams.router_r1()}
DEFAULT_TINY_TOKENIZER = "bundled:smollm2"


@dataclasses.dataclass
class LoadedPolicy:
    """A policy ready for the engine: `params` may be replaced by any same-shaped params (e.g. from training)."""

    label: str
    graphdef: nnx.GraphDef
    params: nnx.State
    config: ModelConfig
    tokenizer: object
    source: str  # the model path or "tiny", for the report's model-family decisions
    trained_with: Optional[dict] = None  # a training run's config, for a policy read from the run's checkpoint

    def trained_template(self, pool) -> Optional[str]:
        """The routing prompt the policy was trained with, when it was read from a training run (else None)."""
        prompt = (self.trained_with or {}).get("prompt")
        return routing_template_for(pool, prompt["template"], prompt["family"], self.source) if prompt else None


def load_policy(spec: str, tokenizer_path: str = "", seed: int = 0, dtype: str = "float32") -> LoadedPolicy:
    """A policy from an HF directory, a `.gguf` file, `bundled:smollm2`, or `tiny` (random weights).

    `tokenizer_path` defaults to the model's own (for `tiny`: the bundled SmolLM2 tokenizer; the tiny model's
    vocabulary is sized to the tokenizer). A training run's work directory gives the actor of its newest readable
    checkpoint step, `<workdir>/ckpt/<step>` that step's (`rr1_jax.run_export`); the label names the step, and
    `trained_with` keeps the run's config (its prompt and synthetic task).
    """
    if not spec:
        raise ValueError("no policy given: pass --policy=tiny, bundled:smollm2, an HF model directory or a .gguf")
    if spec == TINY:
        tokenizer = load_tokenizer(resolve_model_path(tokenizer_path or DEFAULT_TINY_TOKENIZER))
        config = ModelConfig.tiny(vocab_size=len(tokenizer), dtype=dtype, param_dtype=dtype)
        graphdef, params = random_params(config, seed)
        return LoadedPolicy(TINY, graphdef, params, config, _with_pad(tokenizer), TINY)
    path = resolve_model_path(spec)
    if os.path.isdir(path) and run_location(path) is not None:
        run = load_run_policy(path, dtype=dtype)
        graphdef, params = nnx.split(run.model, nnx.Param)
        check_tokenizer_matches(run.tokenizer, run.model.config, where=f"tokenizer of run {spec!r}")
        return LoadedPolicy(f"{policy_label(run.workdir)}@{run.step}", graphdef, jax.device_put(params),
                            run.model.config, _with_pad(run.tokenizer), run.source, run.run_config)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise WeightsError(f"{path}: neither an HF model directory (no config.json) nor a training run's work "
                           f"directory (no ckpt/)")
    if not os.path.exists(path):
        raise WeightsError(f"{path}: policy not found; pass an HF model directory, a .gguf file, "
                           f"bundled:smollm2 or tiny")
    model = load_model(path, dtype=dtype, param_dtype=dtype)
    tokenizer = load_tokenizer(resolve_model_path(tokenizer_path) if tokenizer_path else path)
    check_tokenizer_matches(tokenizer, model.config, where=f"tokenizer of policy {spec!r}")
    graphdef, params = nnx.split(model, nnx.Param)
    return LoadedPolicy(policy_label(spec), graphdef, params, model.config, _with_pad(tokenizer), path)


def _with_pad(tokenizer):
    if tokenizer.pad_token_id is None:  # the engine pads with it; EOS is the usual choice
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def random_params(config: ModelConfig, seed: int = 0, std: float = 0.02):
    """(graphdef, params) of a randomly initialised model, drawn with NumPy (no per-shape jit compiles):
    N(0, std) weights, unit norm scales."""
    graphdef, shapes = nnx.split(abstract_model(config), nnx.Param)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if "norm" in jax.tree_util.keystr(path):
            return jnp.ones(leaf.shape, leaf.dtype)
        return jnp.asarray(rng.normal(0.0, std, leaf.shape), leaf.dtype)

    return graphdef, jax.tree_util.tree_map_with_path(draw, shapes)


def policy_label(spec: str) -> str:
    """A short row label for a policy spec (the last path component)."""
    return os.path.basename(os.path.normpath(spec)) if spec not in (TINY, "bundled:smollm2") else spec


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """Rollout shape of an evaluation (upstream: 4 routed turns, 1024 tokens a turn, 600 observation tokens)."""

    num_slots: int = 8
    max_turns: int = 4
    max_turn_tokens: int = 1024
    max_obs_length: int = 600
    segment_steps: int = 64
    max_prompt_tokens: int = 2048  # longest prompt of the evaluation (sets the single prompt bucket)

    def __post_init__(self):
        if min(self.num_slots, self.max_turn_tokens, self.max_obs_length, self.segment_steps,
               self.max_prompt_tokens) <= 0 or self.max_turns < 0:
            raise ValueError(f"GenerationSettings: sizes must be positive and max_turns >= 0, got {self}")


class PolicyEvaluator:
    """Runs one policy over QA records with a template, a decoding rule and seeds; returns a `MethodResult`."""

    def __init__(self, policy: LoadedPolicy, settings: GenerationSettings):
        self.policy, self.settings = policy, settings
        self._engines = {}

    def engine(self, decoding: str):
        if decoding not in DECODINGS:
            raise ValueError(f"decoding {decoding!r} is unknown; choose one of {list(DECODINGS)}")
        if decoding not in self._engines:
            s, p = self.settings, self.policy
            self._engines[decoding] = engine_policy(
                p.graphdef, p.params, p.config, p.tokenizer, num_slots=s.num_slots, max_turns=s.max_turns,
                max_turn_tokens=s.max_turn_tokens, prompt_buckets=[round_up(s.max_prompt_tokens, 64)],
                obs_buckets=[round_up(s.max_obs_length, 16)], sampling=DECODINGS[decoding])
        engine = self._engines[decoding]
        engine.params = self.policy.params
        return engine

    def prompts(self, records: Sequence[QARecord], template: str) -> list[list[int]]:
        prompts = [render_prompt(self.policy.tokenizer, r.question, template) for r in records]
        longest = max(len(p) for p in prompts)
        if longest > self.settings.max_prompt_tokens:
            raise ValueError(f"a prompt has {longest} tokens, more than max_prompt_tokens="
                             f"{self.settings.max_prompt_tokens}; raise it in the generation settings")
        return prompts

    async def run(self, client: PoolClient, records: Sequence[QARecord], template: str, decoding: str,
                  seeds: Sequence[int], name: str, kind: str = "policy", max_turns: Optional[int] = None,
                  alpha: float = 0.0, note: str = "") -> MethodResult:
        """Evaluates every record once per seed; `max_turns=0` gives a single generation that cannot route."""
        s = self.settings
        turns = s.max_turns if max_turns is None else max_turns
        if turns > s.max_turns:
            raise ValueError(f"max_turns={turns} exceeds the engine's {s.max_turns}")
        config = RolloutConfig(max_turns=turns, max_obs_length=s.max_obs_length, segment_steps=s.segment_steps)
        engine, prompts = self.engine(decoding), self.prompts(records, template)
        scores_per_seed = []
        for seed in seeds:
            normalizer, scores = CostNormalizer(), []
            for start in range(0, len(records), s.num_slots):
                batch = slice(start, start + s.num_slots)
                result = await rollout(engine, client, self.policy.tokenizer, prompts[batch], config,
                                       seed=seed * 100_003 + start // s.num_slots)
                for record, episode in zip(records[batch], result.episodes):
                    scores.append(score_policy_episode(record, episode, client.pool, normalizer(episode.cost),
                                                       alpha))
            scores_per_seed.append(scores)
        return MethodResult.from_scores(name, kind, decoding, seeds, scores_per_seed, note)
