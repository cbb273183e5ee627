"""A tiny byte-level chat tokenizer for engine/rollout/eval tests: whole-text "macro" tokens, then the 256 bytes.

Ids: one per macro string, the 256 bytes, then <|endoftext|> (pad), <|im_start|>, <|im_end|> (EOS). A model
whose logits are all equal decodes id 0 greedily, so a test can make the real engine emit macro 0 every turn.
It is the serving toy router's tokenizer (rr1_jax/serve/toy_policy.py) without its observation-end token.
"""
from rr1_jax.serve.toy_policy import CHAT_TEMPLATE, toy_tokenizer  # noqa: F401 (CHAT_TEMPLATE: re-export)


def byte_tokenizer(macros=()):
    return toy_tokenizer(tuple(macros), added=())
