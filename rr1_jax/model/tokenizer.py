"""Tokenizers for the policy: an HF model directory (offline) or the tokenizer embedded in a GGUF file.

GGUF tokenizers are rebuilt from the file's metadata with `tokenizers` (no torch needed, unlike transformers'
GGUF path). For SmolLM2 (`tokenizer.ggml.pre == "smollm"`) digits are split one by one, as in SmolLM2's
published tokenizer.json and llama.cpp.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import WeightsError

_CONTROL = 3  # llama.cpp token type of special/control tokens
_DIGIT_SPLITTING_PRE = {"smollm", "starcoder", "refact", "codeshell", "exaone", "minerva", "command-r"}


def _gguf_fields(path: str) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            out[key] = field.contents()
    return out


def _tokenizer_from_gguf(path: str):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if not os.path.isfile(path):
        raise WeightsError(f"{path}: GGUF file not found")
    meta = _gguf_fields(path)
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise WeightsError(f"{path}: GGUF tokenizer type {kind!r} is not supported (byte-level BPE 'gpt2' only); "
                           f"use an HF model directory instead")
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    backend = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if meta.get("tokenizer.ggml.pre") in _DIGIT_SPLITTING_PRE:
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        backend.pre_tokenizer = byte_level
    backend.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type") or [0] * len(tokens)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, kind in zip(tokens, types) if kind == _CONTROL])

    def token(key: str) -> Optional[str]:
        idx = meta.get(f"tokenizer.ggml.{key}")
        return None if idx is None else tokens[int(idx)]

    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=token("bos_token_id"), eos_token=token("eos_token_id"),
        unk_token=token("unknown_token_id"), pad_token=token("padding_token_id"),
        chat_template=meta.get("tokenizer.chat_template"))


def load_tokenizer(path: str):
    """A transformers fast tokenizer from an HF directory (offline) or a `.gguf` file."""
    if path.endswith(".gguf"):
        return _tokenizer_from_gguf(path)
    if not os.path.isdir(path):
        raise WeightsError(f"{path}: tokenizer directory not found; pass a local HF model directory or .gguf file")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: no usable tokenizer files (tokenizer.json or vocab/merges) — {e}") from None


def check_tokenizer_matches(tokenizer, config: ModelConfig, where: str = "tokenizer") -> None:
    """Fail early when the tokenizer can emit ids the model has no embedding for (wrong tokenizer for model)."""
    size = len(tokenizer)
    if size > config.vocab_size:
        raise WeightsError(f"{where}: tokenizer has {size} tokens but the model's vocabulary has "
                           f"{config.vocab_size}; the tokenizer belongs to a different model — load both from "
                           f"the same directory or GGUF file")


def stop_token_ids(tokenizer, config: ModelConfig) -> list[int]:
    """The ids that end a generation: the tokenizer's EOS and the model's own EOS ids (config.json and
    generation_config.json, as vLLM stops on them), those the tokenizer has."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return list(dict.fromkeys(ids + [i for i in config.eos_token_ids if 0 <= i < len(tokenizer)]))


def chat_prompt_ids(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of `messages` rendered with the model's chat template (plain concatenation if it has none)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt,
                                             tokenize=False)
    else:
        text = "\n".join(m["content"] for m in messages) + ("\n" if add_generation_prompt else "")
    return tokenizer.encode(text, add_special_tokens=False)
