"""A tiny byte-level chat tokenizer for engine/rollout/eval tests: whole-text "macro" tokens, then the 256 bytes.

Ids: one per macro string, the 256 bytes, then <|endoftext|> (pad), <|im_start|>, <|im_end|> (EOS). A model
whose logits are all equal decodes id 0 greedily, so a test can make the real engine emit macro 0 every turn.
"""
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_tokenizer(macros=()):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from rr1_jax.generate.stops import _gpt2_unicode_to_byte

    to_char = {b: c for c, b in _gpt2_unicode_to_byte().items()}
    vocab = {"".join(to_char[b] for b in text.encode("utf-8")): i for i, text in enumerate(macros)}
    vocab.update({to_char[b]: len(macros) + b for b in range(256)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)
