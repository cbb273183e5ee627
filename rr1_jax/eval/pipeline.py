"""One evaluation run from a config (configs/eval_synthetic.py): data, pool, policies, baselines -> report + plot.

Order: load the questions; start the candidate pool (the simulated server for the synthetic task, or a real
OpenAI-compatible pool); load the policies; evaluate each policy with the routing prompt under every requested
decoding; run the requested baselines on the base policy (the first one unless `base_policy` is set); write
`report.json`, `report.md` and `pareto.png` (plus the policy rows of `compare_reports`, e.g. an α sweep run
as separate jobs).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Optional, Sequence

from rr1_jax.data.qa import DataError, QARecord, load_qa_file
from rr1_jax.data.sampling import upstream_test_set
from rr1_jax.data.sources import parse_source_spec
from rr1_jax.data.synthetic import SyntheticConfig, SyntheticTask, make_synthetic_task
from rr1_jax.data.synthetic_candidates import default_candidates
from rr1_jax.data.synthetic_routing import routing_reference
from rr1_jax.eval.baselines import (COT_TEMPLATE, DIRECT_TEMPLATE, oracle_result,
                                    query_candidates, single_candidate_results)
from rr1_jax.eval.evaluate import GenerationSettings, LoadedPolicy, PolicyEvaluator, load_policy
from rr1_jax.eval.knn_router import knn_result
from rr1_jax.eval.plots import ParetoPoint, pareto_plot, point_label, points_from_methods
from rr1_jax.eval.report import GREEDY, SAMPLED, EvalReport, MethodResult
from rr1_jax.rollout.candidates import CandidatePool
from rr1_jax.rollout.pool import PoolClient
from rr1_jax.rollout.pool_setup import open_pool
from rr1_jax.rollout.prompts import render_prompt, routing_template_for

BASELINES = ("direct", "cot", "prompt_llm", "single", "oracle", "knn")
DECODING_NAMES = {"greedy": GREEDY, "sampled": SAMPLED}
TEST_SUBSETS = ("upstream", "file")


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _limit(records: list, n: int) -> list:
    return records[:n] if n and n > 0 else records


def load_questions(config) -> tuple[list[QARecord], list[QARecord], Optional[SyntheticTask]]:
    """(test, train, synthetic task or None) as the config asks."""
    if config.dataset == "synthetic":
        s = config.synthetic
        task = make_synthetic_task(SyntheticConfig(
            seed=s.seed, num_train=s.num_train, num_test=s.num_test, countries_per_split=s.countries_per_split,
            companies_per_split=s.companies_per_split, albums_per_split=s.albums_per_split))
        return _limit(task.test, config.num_questions), _limit(task.train, config.num_train), task
    if not os.path.isfile(config.dataset):
        raise DataError(f"--dataset={config.dataset!r}: no such file; pass 'synthetic' or a .jsonl/.parquet file")
    if config.test_subset not in TEST_SUBSETS:
        raise ValueError(f"test_subset={config.test_subset!r}: choose one of {TEST_SUBSETS}")
    test = _limit(_file_records(config.dataset, config.data_source, config.test_subset), config.num_questions)
    train = (_limit(_file_records(config.train_dataset, config.data_source, "file"), config.num_train)
             if config.train_dataset else [])
    return test, train, None


def _file_records(path: str, data_source: str, subset: str) -> list[QARecord]:
    """A benchmark file's questions. JSONL: scored as `data_source`, or as FlashRAG's `<benchmark>/` folder names
    it; `subset="upstream"` keeps qa_test_gen.py's rows (min(len, 500), sampled with seed 42). Parquet (upstream's
    prepared, already sampled files): as stored, its data_source replaced when one is given."""
    if path.endswith(".parquet"):
        return load_qa_file(path, data_source or None)
    name = data_source or parse_source_spec(path, "--dataset")[0][0]
    records = load_qa_file(path, name)
    return upstream_test_set({name: records}) if subset == "upstream" else records


def policy_routing_template(config, pool: CandidatePool, policy: LoadedPolicy) -> str:
    """`config.prompt`'s routing template; a policy read from a training run gets the prompt it was trained on."""
    return policy.trained_template(pool) or routing_template_for(pool, config.prompt, config.template_family,
                                                                 policy.source)


def check_same_synthetic_task(config, policy: LoadedPolicy) -> None:
    """A policy trained on the synthetic task is evaluated on the same task: another seed or size invents other
    names, which a word-level task tokenizer has never seen."""
    data = (policy.trained_with or {}).get("data", {})
    if config.dataset != "synthetic" or data.get("source") != "synthetic":
        return
    trained = data["synthetic"]
    differ = {k: v for k, v in trained.items() if k in config.synthetic and config.synthetic[k] != v}
    if differ:
        fix = " ".join(f"--config.synthetic.{k}={v}" for k, v in differ.items())
        raise ValueError(f"policy {policy.label} was trained on another synthetic task ({differ}); evaluate it on "
                         f"its own: {fix}")


def _checked(config, need_policy: bool = True) -> tuple[list[str], list[str], list[str]]:
    policies, baselines = _split_list(config.policy), _split_list(config.baselines)
    decodings = _split_list(config.decoding)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    bad = [d for d in decodings if d not in DECODING_NAMES]
    if bad or not decodings:
        raise ValueError(f"decoding={config.decoding!r}: a comma list of {list(DECODING_NAMES)}")
    if need_policy and not policies:
        raise ValueError("no policy given: pass --policy=tiny, bundled:smollm2, an HF directory or a .gguf")
    if config.sampled_seeds < 1:
        raise ValueError(f"sampled_seeds={config.sampled_seeds} must be >= 1")
    return policies, baselines, [DECODING_NAMES[d] for d in decodings]


def run_evaluation(config, policies: Optional[Sequence[LoadedPolicy]] = None,
                   base: Optional[LoadedPolicy] = None) -> EvalReport:
    """Evaluates the configured policies and baselines; returns the report (nothing written).

    `policies` (e.g. params in memory during training) replace `config.policy`; `base` — the untrained policy
    the Direct / CoT / Prompt LLM / KNN baselines use — replaces `config.base_policy` (default: the first policy).
    """
    specs, baselines, decodings = _checked(config, need_policy=policies is None)
    test, train, task = load_questions(config)
    if not test:
        raise DataError(f"{config.dataset}: no questions to evaluate")
    with contextlib.ExitStack() as stack:
        pool, pool_config = open_pool(config.pool, task, stack)
        if policies is None:
            policies = [load_policy(s, config.tokenizer, config.seed, config.dtype) for s in specs]
        policies = list(policies)
        if not policies and base is None:
            raise ValueError("no policy to evaluate: pass at least one policy (or a base policy for the baselines)")
        if base is None and config.base_policy:
            base = load_policy(config.base_policy, config.tokenizer, config.seed, config.dtype)
        if base is not None:
            policies.append(base)  # evaluated last, under the baselines' names only
        for p in policies:
            check_same_synthetic_task(config, p)
        templates = [policy_routing_template(config, pool, p) for p in policies]
        longest = max(len(render_prompt(p.tokenizer, r.question, t)) for p, routing in zip(policies, templates)
                      for t in (routing, DIRECT_TEMPLATE, COT_TEMPLATE) for r in test)
        g = config.generation
        settings = GenerationSettings(num_slots=g.num_slots, max_turns=g.max_turns, max_turn_tokens=g.max_turn_tokens,
                                      max_obs_length=g.max_obs_length, segment_steps=g.segment_steps,
                                      max_prompt_tokens=longest)
        methods = asyncio.run(_evaluate(config, pool, pool_config, policies, templates, settings, baselines,
                                        decodings, test, train, separate_base=base is not None))
    evaluated = policies[:-1] if base is not None else policies
    meta = {"dataset": config.dataset, "policy": ", ".join(p.label for p in evaluated),
            "base_policy": (base or policies[0]).label,
            "pool": list(pool.names), "questions": len(test), "max_turns": settings.max_turns,
            "max_turn_tokens": settings.max_turn_tokens, "alpha": config.alpha, "prompt": config.prompt,
            "config": config.to_dict()}
    if task is not None:
        reference = routing_reference(test, default_candidates(), task.table, config.pool.simulated_seed)
        meta["routing_reference"] = {"oracle": {"em": reference.oracle.em, "cost": reference.oracle.cost},
                                     "best_single": {"name": reference.best_single.name,
                                                     "em": reference.best_single.em,
                                                     "cost": reference.best_single.cost}}
    return EvalReport(methods, meta)


async def _evaluate(config, pool, pool_config, policies, templates, settings, baselines, decodings, test, train,
                    separate_base: bool) -> list[MethodResult]:
    seeds = {GREEDY: [config.seed], SAMPLED: [config.seed + i for i in range(config.sampled_seeds)]}
    methods: list[MethodResult] = []
    async with PoolClient(pool, pool_config) as client:
        evaluators = [PolicyEvaluator(p, settings) for p in policies]
        base, base_template = (evaluators[-1], templates[-1]) if separate_base else (evaluators[0], templates[0])
        for evaluator, template in zip(evaluators[:-1] if separate_base else evaluators, templates):
            for decoding in decodings:
                methods.append(await evaluator.run(client, test, template, decoding, seeds[decoding],
                                                   f"policy: {evaluator.policy.label}", alpha=config.alpha))
        for decoding in decodings:
            if "prompt_llm" in baselines:  # the base policy with the routing prompt
                name = f"Prompt LLM ({base.policy.label})"
                if separate_base:
                    methods.append(await base.run(client, test, base_template, decoding, seeds[decoding], name,
                                                  kind="baseline", alpha=config.alpha))
                else:  # the first policy's own row, renamed
                    row = next(m for m in methods if m.decoding == decoding)
                    methods.append(row.renamed(name, "baseline"))
            for name, template in (("direct", DIRECT_TEMPLATE), ("cot", COT_TEMPLATE)):
                if name in baselines:
                    label = {"direct": "Direct", "cot": "CoT"}[name]
                    methods.append(await base.run(client, test, template, decoding, seeds[decoding],
                                                  f"{label} ({base.policy.label})", kind="baseline", max_turns=0,
                                                  alpha=config.alpha))
        if "single" in baselines or "oracle" in baselines:
            replies = await query_candidates(client, test)
            if "single" in baselines:
                methods += single_candidate_results(test, replies, pool)
            if "oracle" in baselines:
                methods.append(oracle_result(test, replies, pool))
        if "knn" in baselines:
            methods.append(await knn_result(base.policy, client, train, test, config.knn_k))
    return methods


def compare_points(report_paths: Sequence[str]) -> list[ParetoPoint]:
    """Pareto points of the policy rows of earlier report.json files (e.g. the other runs of an α sweep),
    labelled with their directory."""
    points = []
    for path in report_paths:
        if not os.path.isfile(path):
            raise ValueError(f"compare_reports: {path!r} is not a file; pass report.json paths of earlier runs")
        with open(path) as f:
            methods = json.load(f).get("methods", [])
        run = os.path.basename(os.path.dirname(os.path.abspath(path)))
        for m in methods:
            overall = m["summary"]["overall"]
            if m.get("kind") == "policy" and overall.get("em") and overall.get("cost"):
                points.append(ParetoPoint(f"{point_label(m['name'], m['decoding'])} ({run})", overall["cost"]["mean"],
                                          overall["em"]["mean"], "policy"))
    return points


def write_outputs(report: EvalReport, out_dir: str, compare_reports: Sequence[str] = ()) -> dict[str, str]:
    """Writes report.json, report.md and pareto.png (this report's rows plus the policy rows of
    `compare_reports`) into `out_dir`; returns their paths by kind."""
    extra = compare_points(compare_reports)
    json_path, md_path = report.write(out_dir)
    png = pareto_plot(points_from_methods(report.methods) + extra, os.path.join(out_dir, "pareto.png"),
                      title=f"EM vs cost — {report.meta.get('dataset', '')}")
    return {"json": json_path, "markdown": md_path, "plot": png}
