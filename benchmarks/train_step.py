"""Benchmark one PPO update (prepare + critic + actor) on random weights: compile time, steady step time,
tokens/s and model FLOP/s against a plain jnp matmul peak measured in the same process; peak RSS.

    .venv/bin/python benchmarks/train_step.py                      # tiny and SmolLM2-135M sizes, batch 8, seq 512
    .venv/bin/python benchmarks/train_step.py --models tiny --steps 5

Model FLOPs count what the algorithm needs (no rematerialisation): π_old and π_ref forwards, the critic forward,
then forward+backward (3x forward) of the critic and of the actor. Attention is counted over the full T x T
scores, as the implementation computes them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rr1_jax.model.config import ModelConfig  # noqa: E402
from rr1_jax.model.critic import critic_from_policy  # noqa: E402
from rr1_jax.model.transformer import init_model  # noqa: E402
from rr1_jax.metrics import peak_rss_gb  # noqa: E402
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig  # noqa: E402
from rr1_jax.rl.trainer import PPOTrainer  # noqa: E402
from rr1_jax.rollout.trajectory import build_trajectories  # noqa: E402


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """FLOP/s of an n x n f32 matmul (the practical peak of this machine)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def random_batch(rows: int, prompt: int, response: int, vocab: int, seed: int = 0):
    """Full-length rows: prompt | policy turn | observation | policy turn (every response token real)."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(1, vocab, prompt).tolist() for _ in range(rows)]
    responses = [rng.integers(1, vocab, response).tolist() for _ in range(rows)]
    third = response // 3
    flags = [[True] * third + [False] * third + [True] * (response - 2 * third) for _ in range(rows)]
    logps = [(-rng.random(response)).tolist() for _ in range(rows)]
    return build_trajectories(prompts, responses, flags, logps, prompt, response, 0)


def forward_flops(c: ModelConfig, tokens: int, seq: int, head_tokens: int, with_head: bool) -> float:
    layer_params = c.num_params - c.vocab_size * c.hidden_size * (1 if c.tie_embeddings else 2)
    flops = 2 * layer_params * tokens + 4 * c.num_layers * seq * c.num_heads * c.head_dim * tokens
    return flops + (2 * c.hidden_size * c.vocab_size * head_tokens if with_head else 0)


class CompileSeconds:
    """Sums XLA backend compile time reported by jax.monitoring while active."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.seconds += duration


def bench(name: str, config: ModelConfig, rows: int, prompt: int, response: int, steps: int, peak: float):
    actor = init_model(config, 0)
    critic = critic_from_policy(actor, head_std=0.02)
    ppo = PPOConfig(mini_batch_size=rows // 2, micro_batch_size=max(1, rows // 4), logprob_chunk=128)
    trainer = PPOTrainer(actor, critic, ppo, OptimConfig(lr=1e-6), OptimConfig(lr=1e-5))
    del actor, critic
    traj = random_batch(rows, prompt, response, config.vocab_size)
    scores = np.linspace(-1, 1, rows).astype(np.float32)
    state = trainer.init_state(copy=False)  # no second copy of actor/critic/ref/optimizer states
    compile_seconds = CompileSeconds()
    jax.monitoring.register_event_duration_secs_listener(compile_seconds)
    start = time.perf_counter()
    state, _ = trainer.ppo_iteration(state, traj, scores)  # compiles prepare, critic and actor updates
    first = time.perf_counter() - start
    jax.monitoring.unregister_event_duration_listener(compile_seconds)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = trainer.ppo_iteration(state, traj, scores)
        times.append(time.perf_counter() - start)
    step = float(np.median(times))
    seq = prompt + response
    tokens = rows * seq
    fa = forward_flops(config, tokens, seq, rows * response, True)
    fc = forward_flops(config, tokens, seq, 0, False)
    model_flops = 5 * fa + 4 * fc  # prepare: 2 actor + 1 critic fwd; updates: 3x fwd each
    rss_gb = peak_rss_gb()
    return dict(model=name, params_m=config.num_params / 1e6, compile_s=compile_seconds.seconds, first_s=first,
                step_s=step, tok_s=tokens / step, gflops=model_flops / step / 1e9, mfu=model_flops / step / peak,
                rss_gb=rss_gb,
                finite=all(np.isfinite(v) for v in metrics.values()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2_135m", help="comma-separated ModelConfig names")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--response", type=int, default=384)
    parser.add_argument("--steps", type=int, default=2, help="timed steady-state iterations")
    args = parser.parse_args()
    peak = matmul_peak()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}; "
          f"matmul peak (1024^2 f32) = {peak / 1e9:.1f} GFLOP/s; batch {args.rows} x seq {args.prompt + args.response}")
    header = (f"{'model':<14}{'params':>9}{'compile s':>11}{'1st iter s':>11}{'step s':>9}{'tokens/s':>10}"
              f"{'GFLOP/s':>9}{'of peak':>9}{'peak RSS':>10}")
    print(header)
    for name in args.models.split(","):
        r = bench(name, ModelConfig.named(name), args.rows, args.prompt, args.response, args.steps, peak)
        print(f"{r['model']:<14}{r['params_m']:>8.1f}M{r['compile_s']:>11.1f}{r['first_s']:>11.1f}{r['step_s']:>9.2f}"
              f"{r['tok_s']:>10.0f}{r['gflops']:>9.1f}{100 * r['mfu']:>8.0f}%{r['rss_gb']:>8.2f}GB"
              + ("" if r["finite"] else "  NaN!"),
              flush=True)


if __name__ == "__main__":
    main()
