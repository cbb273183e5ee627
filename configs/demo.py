"""`make demo`: a tiny policy learns to route on the synthetic task, on a laptop CPU in a few minutes.

SFT warm start on demonstrations whose candidate choice is uniform at random (the format is taught, the routing
is not), then PPO against the simulated candidate pool (in-process OpenAI-compatible server): the policy learns
which candidate knows which domain. Compact prompt, 2 routed turns, short generations.
"""
from configs import base


def get_config():
    c = base.get_config()
    c.workdir = "runs/demo"
    c.model.family = "tiny"
    c.model.path = ""
    c.model.tokenizer = "synthetic:2048"  # byte-level BPE trained on the task's text: a small LM head
    c.model.size.update(dict(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                             intermediate_size=384, tie_embeddings=True))
    c.data.source = "synthetic"
    c.data.batch_size = 32
    c.data.val_size = 64
    c.data.synthetic.update(dict(seed=0, num_train=400, num_test=100))
    c.pool.kind = "simulated"
    c.pool.latency_scale = 0.0
    c.prompt.template = "compact"
    c.rollout.update(dict(max_turns=2, max_turn_tokens=96, max_obs_length=64, max_prompt_tokens=256,
                          segment_steps=32, temperature=1.0, top_p=1.0, response_buckets=(384, 512)))
    c.sft.update(dict(steps=200, strategy="uniform", num_demos=400, lr=2e-3, batch_size=16, warmup_steps=20))
    c.ppo.update(dict(mini_batch_size=16, micro_batch_size=16, entropy_coeff=0.0, kl_coef=0.0))
    c.optim.actor.lr = 1e-4
    c.optim.critic.lr = 1e-3
    c.train.update(dict(total_steps=40, val_every=20, export_hf=True))
    c.checkpoint.save_every = 20
    return c
