"""A deterministic two-layer router for tests, benchmarks and smoke runs of the server: real weights, real engine.

Random tiny weights never write `</search>` or `</answer>`, so they never route. This toy does, through the same
jitted engine as any model: every layer's residual writes (`o_proj`, `down_proj`) are zero, so the hidden state
is the current token's embedding, and the embedding / LM head implement a successor table — the greedy (and, with
logit gaps of 80, also the sampled) next token is a fixed function of the current one:

    any other token      -> "<think>ask" " a1" … " aN" "</think>" "<search> {model}: {query} </search>"
    "</information>\\n\\n" -> "<think>answer" " b1" … " bN" " </think>" "<answer> {answer} </answer>"
    the route / answer token -> EOS

A prompt therefore gets `N + 3` tokens of thinking and one route; once the observation (ending in the
`</information>\\n\\n` token) is appended, `N + 3` more tokens and the answer. An observation cut by
`max_obs_length` loses that token, and the toy routes again. Its tokenizer is byte-level: one token per byte, the
whole-text tokens above, and <|endoftext|> (pad), <|im_start|>, <|im_end|> (EOS) with a ChatML template.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rr1_jax.eval.evaluate import LoadedPolicy
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import abstract_model

OBS_END = "</information>\n\n"
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_LOGIT = 10.0  # head weight; the normalised one-hot hidden state is sqrt(hidden) = 8, so the logit gap is 80


def toy_tokenizer(macros, added=(OBS_END,)):
    """Byte-level BPE (no merges) whose first ids decode to the whole `macros` strings; the `added` strings
    (default `OBS_END`) are added non-special tokens, so encoding an observation ends with one."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from rr1_jax.generate.stops import _gpt2_unicode_to_byte

    to_char = {b: c for c, b in _gpt2_unicode_to_byte().items()}
    vocab = {"".join(to_char[b] for b in text.encode("utf-8")): i for i, text in enumerate(macros)}
    if len(vocab) != len(macros):
        raise ValueError("toy tokenizer macros must be distinct strings")
    vocab.update({to_char[b]: len(macros) + b for b in range(256)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    backend.add_tokens([AddedToken(text, special=False, normalized=False) for text in added])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


def toy_router_policy(route_model: str = "Qwen2.5-7B-Instruct", route_query: str = "What is the capital of France?",
                      answer: str = "Paris", think_steps: int = 4, seed: int = 0) -> LoadedPolicy:
    """The toy router (see the module docstring) as a `LoadedPolicy` any server or evaluator can run."""
    if not 0 <= think_steps <= 24:
        raise ValueError(f"think_steps={think_steps}: use 0..24 (one hidden dimension per chain token)")
    steps = range(1, think_steps + 1)
    ask = ["<think>ask"] + [f" a{i}" for i in steps] + ["</think>", f"<search> {route_model}: {route_query} </search>"]
    reply = ["<think>answer"] + [f" b{i}" for i in steps] + [" </think>", f"<answer> {answer} </answer>"]
    tokenizer = toy_tokenizer(ask + reply)
    obs_end = tokenizer.convert_tokens_to_ids(OBS_END)
    eos = tokenizer.eos_token_id
    successor = {i: i + 1 for i in range(len(ask) - 1)}  # chain ids: ask = 0.., reply = len(ask)..
    successor.update({len(ask) + i: len(ask) + i + 1 for i in range(len(reply) - 1)})
    successor.update({len(ask) - 1: eos, len(ask) + len(reply) - 1: eos, obs_end: len(ask)})
    config = ModelConfig.tiny(vocab_size=len(tokenizer))
    graphdef, shapes = nnx.split(abstract_model(config), nnx.Param)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, 0.2, x.shape), x.dtype), shapes)
    embed = np.zeros((config.vocab_size, config.hidden_size), np.float32)  # [V, E]: class 0 = every other token
    head = np.zeros((config.hidden_size, config.vocab_size), np.float32)  # [E, V]
    embed[:, 0] = 1.0
    head[0, 0] = _LOGIT  # any other token -> the first "ask" token (id 0)
    for row, (token, nxt) in enumerate(sorted(successor.items()), start=1):
        embed[token] = 0.0
        embed[token, row] = 1.0
        head[row, nxt] = _LOGIT
    params["embed"][...] = jnp.asarray(embed)
    params["lm_head"][...] = jnp.asarray(head)
    for name in ("o_proj", "down_proj"):
        params["layers"][name][...] = jnp.zeros_like(params["layers"][name][...])
    for name in ("attn_norm", "mlp_norm", "final_norm"):
        leaf = params[name] if name == "final_norm" else params["layers"][name]
        leaf[...] = jnp.ones_like(leaf[...])
    return LoadedPolicy("toy", graphdef, params, config, tokenizer, "toy")
