"""launch/eval.py end to end on the synthetic task: the tiny random policy and SmolLM2, baselines as rows."""
import functools
import importlib.util
import json
import os
import sys

import pytest

from rr1_jax.data.qa import DataError
from tests.eval.conftest import small_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG = b"\x89PNG\r\n\x1a\n"


@functools.lru_cache(maxsize=None)
def launch_module():
    """launch/eval.py, imported once (it defines absl flags)."""
    spec = importlib.util.spec_from_file_location("launch_eval", os.path.join(ROOT, "launch", "eval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_outputs(paths):
    with open(paths["plot"], "rb") as f:
        assert f.read(8) == PNG
    with open(paths["json"]) as f:
        report = json.load(f)
    with open(paths["markdown"]) as f:
        markdown = f.read()
    rows = {(m["name"], m["decoding"]): m for m in report["methods"]}
    return report, rows, markdown


def check_candidate_baselines(report, rows, markdown, k, n=6):
    reference = report["meta"]["routing_reference"]
    oracle = rows["oracle router", "candidates"]["summary"]["overall"]
    assert oracle["em"]["mean"] == pytest.approx(reference["oracle"]["em"])
    assert oracle["cost"]["mean"] == pytest.approx(reference["oracle"]["cost"])
    best = rows[f"single: {reference['best_single']['name']}" + (
        " (largest)" if reference["best_single"]["name"] == "Mixtral-8x22B-Instruct" else ""), "candidates"]
    assert best["summary"]["overall"]["em"]["mean"] == pytest.approx(reference["best_single"]["em"])
    knn = rows[f"KNN router (k={k})", "candidates"]["summary"]["overall"]
    assert knn["calls"]["mean"] == 1.0 and 0.0 <= knn["em"]["mean"] <= oracle["em"]["mean"]
    assert f"| oracle router | candidates | 1 | {n} |" in markdown


def test_tiny_policy_synthetic_report_and_plot(tmp_path, byte_tokenizer_dir, capsys, monkeypatch):
    """Through the command line: flags and `--config.*` overrides (the values of `small_config`)."""
    from absl import flags

    out = tmp_path / "out"
    overrides = ["synthetic.num_train=16", "synthetic.num_test=8", "num_questions=6", "num_train=12",
                 "prompt=compact", "generation.max_turns=1", "generation.max_turn_tokens=8",
                 "generation.max_obs_length=64", "generation.segment_steps=8", "sampled_seeds=2", "knn_k=3",
                 f"tokenizer={byte_tokenizer_dir}"]
    module = launch_module()
    argv = (["eval", f"--config={ROOT}/configs/eval_synthetic.py", "--policy=tiny", "--dataset=synthetic",
             "--baselines=direct,cot,prompt_llm,single,oracle,knn", f"--out={out}"]
            + [f"--config.{o}" for o in overrides])
    monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the `--config.*` overrides from sys.argv
    flags.FLAGS(argv)
    module.main(["eval"])
    paths = {"json": str(out / "report.json"), "markdown": str(out / "report.md"), "plot": str(out / "pareto.png")}
    report, rows, markdown = read_outputs(paths)
    assert markdown in capsys.readouterr().out
    assert report["meta"]["questions"] == 6 and report["meta"]["policy"] == "tiny"
    names = {name for name, _ in rows}
    assert {"policy: tiny", "Prompt LLM (tiny)", "Direct (tiny)", "CoT (tiny)", "oracle router",
            "KNN router (k=3)"} <= names and sum(n.startswith("single: ") for n in names) == 6
    for name in ("policy: tiny", "Direct (tiny)", "CoT (tiny)"):
        greedy, sampled = rows[name, "greedy"], rows[name, "sampled T=1 top-p 0.95"]
        assert greedy["seeds"] == [0] and sampled["seeds"] == [0, 1]
        assert len(sampled["episodes"]) == 2 and all(len(run) == 6 for run in sampled["episodes"])
        assert set(greedy["summary"]) >= {"overall", "synthetic_capital", "synthetic_multihop"}
        assert greedy["summary"]["overall"]["format"] is not None
    # a random policy emits random bytes: the two sampled seeds differ, and it never answers correctly
    texts = [[e["answer"] for e in run] for run in rows["policy: tiny", "greedy"]["episodes"]]
    assert rows["policy: tiny", "greedy"]["summary"]["overall"]["em"]["mean"] == 0.0 and texts
    assert rows["Direct (tiny)", "greedy"]["summary"]["overall"]["calls"]["mean"] == 0.0  # max_turns=0: no routing
    check_candidate_baselines(report, rows, markdown, k=3)
    assert "| policy: tiny | greedy | 1 | 6 |" in markdown
    assert "| CoT (tiny) | sampled T=1 top-p 0.95 | 2 | 6 |" in markdown


@pytest.mark.slow
def test_smollm2_synthetic_report_and_plot(tmp_path):
    config = small_config(str(tmp_path / "out"), "bundled:smollm2")
    config.decoding, config.baselines = "greedy", "direct,prompt_llm,single,oracle,knn"
    config.num_questions, config.num_train, config.generation.num_slots = 4, 6, 4
    paths = launch_module().evaluate_and_write(config)
    report, rows, markdown = read_outputs(paths)
    assert report["meta"]["policy"] == "bundled:smollm2"
    policy = rows["policy: bundled:smollm2", "greedy"]
    assert rows["Prompt LLM (bundled:smollm2)", "greedy"]["summary"] == policy["summary"]
    assert ("Direct (bundled:smollm2)", "greedy") in rows and ("CoT (bundled:smollm2)", "greedy") not in rows
    assert len(policy["episodes"][0]) == 4
    check_candidate_baselines(report, rows, markdown, k=3, n=4)


def test_user_errors_name_the_problem(tmp_path, byte_tokenizer_dir):
    from rr1_jax.eval.pipeline import run_evaluation

    config = small_config(str(tmp_path / "out"), "tiny", byte_tokenizer_dir)
    config.baselines = "direct,best_guess"
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['best_guess'\]"):
        run_evaluation(config)
    config.baselines, config.decoding = "direct", "beam"
    with pytest.raises(ValueError, match="decoding='beam'"):
        run_evaluation(config)
    config.decoding, config.dataset = "greedy", str(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no such file"):
        run_evaluation(config)
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "1", "question": "Who?", "golden_answers": ["me"]}\n')
    config.dataset, config.data_source = str(questions), "nq"
    with pytest.raises(ValueError, match="only knows the synthetic task"):
        run_evaluation(config)
    config.dataset, config.policy = "synthetic", str(tmp_path)
    with pytest.raises(ValueError, match="neither an HF model directory"):
        run_evaluation(config)


def test_in_memory_routing_policy_calls_and_cost_reach_the_report(tmp_path):
    """A policy whose every generation is one macro token `<think>…</think><search> Qwen…: <question> </search>`
    (all-equal logits, greedy): the real rollout routes each question `max_turns` times through the simulated
    pool, and the report counts those calls and their cost; `base` runs the baselines separately."""
    import jax
    import jax.numpy as jnp

    from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
    from rr1_jax.data.synthetic_candidates import default_candidates, find_candidate, simulated_reply
    from rr1_jax.eval.evaluate import LoadedPolicy, random_params
    from rr1_jax.eval.pipeline import compare_points, run_evaluation, write_outputs
    from rr1_jax.model.config import ModelConfig
    from tests.byte_tokenizer import byte_tokenizer

    config = small_config(str(tmp_path / "out"))
    config.decoding, config.baselines, config.num_questions, config.generation.max_turns = "greedy", "prompt_llm", 4, 2
    table = make_synthetic_task(SyntheticConfig(seed=0, num_train=16, num_test=8)).table
    query = f"What is the capital of {sorted(table.capital_of)[0]}?"
    tokenizer = byte_tokenizer([f"<think>ask</think><search> Qwen2.5-7B-Instruct: {query} </search>"])
    model_config = ModelConfig.tiny(vocab_size=len(tokenizer))
    graphdef, params = random_params(model_config, seed=0)
    router = jax.tree.map(lambda x: x, params)
    router["final_norm"] = jax.tree.map(jnp.zeros_like, params["final_norm"])  # all logits 0 -> id 0
    policies = [LoadedPolicy("router", graphdef, router, model_config, tokenizer, "tiny")]
    base = LoadedPolicy("random", graphdef, params, model_config, tokenizer, "tiny")
    report = run_evaluation(config, policies=policies, base=base)
    row = report.method("policy: router")
    overall = row.summary["overall"]
    reply_cost = simulated_reply(find_candidate(default_candidates(), "Qwen2.5-7B-Instruct"), query, table).cost
    assert overall["calls"]["mean"] == 2.0 and overall["calls/Qwen2.5-7B-Instruct"]["mean"] == 2.0
    assert overall["cost"]["mean"] == pytest.approx(2 * reply_cost) and reply_cost > 0
    assert overall["route_cnt"]["mean"] == 3.0  # the third, unanswered route is well-formed too
    assert overall["format"]["mean"] == 0.0 and overall["em"]["mean"] == 0.0  # never answers
    assert report.meta["policy"] == "router" and report.meta["base_policy"] == "random"
    prompt_llm = report.method("Prompt LLM (random)").summary["overall"]
    assert prompt_llm["calls"]["mean"] == 0.0  # the random base policy was run separately and never routes
    paths = write_outputs(report, str(tmp_path / "out"), compare_reports=[])
    assert [p.label for p in compare_points([paths["json"]])] == ["policy: router [greedy] (out)"]
    sweep = write_outputs(report, str(tmp_path / "sweep"), compare_reports=[paths["json"]])
    with open(sweep["plot"], "rb") as f:
        assert f.read(8) == PNG
