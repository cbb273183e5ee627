"""Shared evaluation fixtures: a small byte-level chat tokenizer saved as an HF directory, and a small synthetic
config that runs the whole evaluation on CPU in seconds."""
import pytest

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_tokenizer(macros=()):
    """Ids: one per macro string (a whole text as a single token), the 256 bytes, then <|endoftext|> (pad),
    <|im_start|>, <|im_end|> (EOS). A model whose logits are all equal decodes id 0 greedily."""
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


@pytest.fixture(scope="session")
def byte_tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("byte_tokenizer")
    byte_tokenizer().save_pretrained(str(path))
    return str(path)


def small_config(out_dir: str, policy: str = "tiny", tokenizer: str = ""):
    """The synthetic evaluation at toy size: 6 questions, 1 routed turn, a few tokens per turn."""
    from configs import eval_synthetic

    c = eval_synthetic.get_config()
    c.policy, c.tokenizer, c.out = policy, tokenizer, out_dir
    c.synthetic.num_train, c.synthetic.num_test = 16, 8
    c.num_questions, c.num_train = 6, 12
    c.prompt = "compact"
    c.generation.num_slots, c.generation.max_turns = 8, 1
    c.generation.max_turn_tokens, c.generation.max_obs_length, c.generation.segment_steps = 8, 64, 8
    c.sampled_seeds = 2
    c.knn_k = 3
    return c
