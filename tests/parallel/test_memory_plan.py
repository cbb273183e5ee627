"""Planning tables and `plan()` on top of the memory model, and the docs that quote them."""
import os

from rr1_jax.model.config import ModelConfig
from rr1_jax.parallel import memory_plan
from rr1_jax.parallel.chips import CHIPS, ChipSpec
from rr1_jax.parallel.memory import MeshShape, TrainingSetup, estimate_memory


def test_memory_table_cli(capsys):
    memory_plan.main(["--models", "qwen2_5_3b", "--micro-batch", "4", "--decode-param-dtype", "bfloat16"])
    out = capsys.readouterr().out
    assert "micro_batch=4" in out and "decode_param_dtype='bfloat16'" in out
    assert sum(line.startswith("| qwen2_5_3b |") for line in out.splitlines()) == len(memory_plan.TARGETS)


def test_plan_prefers_throughput_when_memory_is_plenty_and_refuses_what_cannot_fit():
    qwen, base = ModelConfig.qwen2_5_3b(), TrainingSetup.router_r1()
    huge = ChipSpec("huge", 10 ** 13, 1, 1)
    mesh, setup, est = memory_plan.plan(qwen, huge, 4, base)
    assert (mesh, setup.rollout_slots, setup.decode_rules, setup.remat, setup.micro_batch) == (
        MeshShape(fsdp=4), 64, "decode", "dots_no_batch", 32)
    # f32 actor + critic + reference + AdamW of a 3B model alone exceed one 80 GB GPU
    assert estimate_memory(ModelConfig.llama3_2_3b(), base, MeshShape()).train_state > CHIPS["a100-80gb"].hbm_bytes
    assert memory_plan.plan(ModelConfig.llama3_2_3b(), CHIPS["a100-80gb"], 1, base) is None
    mesh, setup, est = memory_plan.plan(qwen, CHIPS["v5p"], 4, base)
    assert est.fits(CHIPS["v5p"]) and setup.micro_batch % mesh.batch_shards == 0
    assert setup.rollout_slots % mesh.batch_shards == 0 and 32 % setup.micro_batch == 0
    assert "does not fit" in memory_plan.plan_table(["llama3_2_3b"], base)


def test_docs_scaling_tables_are_current():
    """docs/scaling.md quotes this model's tables; regenerate them (python -m rr1_jax.parallel.memory_plan [--plan])
    when the model or the sharding rules change."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "scaling.md")).read()
    models, base = ["llama3_2_3b", "qwen2_5_3b"], TrainingSetup.router_r1()
    assert memory_plan.memory_table(models, base) in doc
    assert memory_plan.plan_table(models, base) in doc
