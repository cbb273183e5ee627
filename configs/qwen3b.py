"""Router-R1's Qwen2.5-3B-Instruct run (upstream train.sh): NQ + HotpotQA, the six-model NVIDIA NIM pool.

Weights from a local HF directory: `--config.model.path=/models/Qwen2.5-3B-Instruct` or $RR1_QWEN3B_PATH.
Data: FlashRAG JSONL files prepared as in docs/data.md. API key: $NVIDIA_API_KEY (see rollout/candidates.py).
Memory and mesh per machine: docs/scaling.md (e.g. TPU v5p-8: --config.mesh.fsdp=4).
"""
from configs import base


def get_config():
    c = base.get_config()
    c.workdir = "runs/qwen3b"
    c.model.family = "qwen2_5_3b"
    c.model.path = "$RR1_QWEN3B_PATH"
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    # upstream's qa_train_merge.py (7,000 per source) and qa_test_merge.py (100 per source; NQ has a test split,
    # HotpotQA's evaluation split is dev); FlashRAG files under ./data, or --config.data.source=... elsewhere
    c.data.source = "data/nq/train.jsonl,data/hotpotqa/train.jsonl"
    c.data.val_source = "data/nq/test.jsonl,data/hotpotqa/dev.jsonl"
    c.data.train_per_source = 7000
    c.data.val_per_source = 100
    c.data.batch_size = 64
    c.data.val_size = 200
    c.pool.kind = "router_r1"
    c.prompt.update(dict(template="upstream", family="qwen"))
    c.rollout.update(dict(max_turns=4, max_turn_tokens=1024, max_obs_length=600, max_prompt_tokens=2048,
                          temperature=1.0, top_p=0.95))
    c.ppo.update(dict(mini_batch_size=32, micro_batch_size=8, clip_ratio=0.2, cliprange_value=0.5,
                      entropy_coeff=0.001, kl_coef=0.001, gamma=1.0, lam=1.0))
    c.optim.actor.lr = 1e-6
    c.optim.critic.lr = 1e-5
    c.train.update(dict(total_steps=225, val_every=25))
    return c
