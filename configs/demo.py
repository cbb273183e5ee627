"""The training demo (`make train-demo`): a tiny policy, SFT warm start then PPO on the synthetic routing task.

SFT on terse demonstrations whose candidate choice is uniform at random (the format is taught, the routing is
not), then PPO against the simulated candidate pool (in-process OpenAI-compatible server), which rewards routing
each domain to the candidate that knows it. Word-level task tokenizer (every entity name, tag and candidate
name is one token), compact prompt, 2 routed turns, short generations.

Measured (README, benchmarks/learning.py): the SFT policy writes valid Router-R1 format and names the right
domain, but a 2-layer width-128 model trained from scratch does not learn to copy unseen entity names from the
question into its query within a CPU budget (it recalls training entities instead), so exact match stays near
0 and PPO has little EM signal; cost-aware routing (alpha > 0) is what it can learn here.
"""
from configs import base


def get_config():
    c = base.get_config()
    c.workdir = "runs/demo"
    c.model.family = "tiny"
    c.model.path = ""
    c.model.tokenizer = "synthetic:words"  # word-level tokenizer of the task's own text: a ~3.7k-token LM head
    c.model.size.update(dict(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                             intermediate_size=384, tie_embeddings=True))
    c.data.source = "synthetic"
    c.data.batch_size = 32
    c.data.val_size = 64
    c.data.synthetic.update(dict(seed=0, num_train=2000, num_test=100, countries_per_split=120,
                                 companies_per_split=160, albums_per_split=160))
    c.pool.kind = "simulated"
    c.pool.latency_scale = 0.0
    c.prompt.template = "compact"
    c.rollout.update(dict(max_turns=2, max_turn_tokens=64, max_obs_length=64, max_prompt_tokens=256,
                          segment_steps=32, temperature=1.0, top_p=1.0, response_buckets=(256, 384)))
    c.sft.update(dict(steps=400, strategy="uniform", style="terse", num_demos=2000, lr=1e-3, batch_size=16,
                      warmup_steps=30, rename=0.5, direct_multihop=0.5, copy_steps=800, copy_lr=3e-3,
                      copy_length=24, copy_gap=48, copy_mix=8))
    c.ppo.update(dict(mini_batch_size=16, micro_batch_size=16, entropy_coeff=0.0, kl_coef=0.0, critic_warmup=1))
    c.optim.actor.lr = 3e-4
    c.optim.critic.lr = 1e-3
    c.train.update(dict(total_steps=30, val_every=15, export_hf=True))
    c.checkpoint.save_every = 15
    return c
