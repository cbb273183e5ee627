"""Where generation stops: the tokenizer's EOS plus the model's EOS ids from config.json and generation_config.json."""
import json

import pytest

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import WeightsError, read_hf_config
from rr1_jax.model.tokenizer import stop_token_ids
from rr1_jax.rollout.policy import engine_policy
from tests.byte_tokenizer import byte_tokenizer

CONFIG = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 300, "hidden_size": 32,
          "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 1, "intermediate_size": 64,
          "eos_token_id": 260}


def write(directory, name, data):
    (directory / name).write_text(json.dumps(data))


def test_generation_config_adds_its_eos_ids(tmp_path):
    write(tmp_path, "config.json", CONFIG)
    assert read_hf_config(str(tmp_path)).eos_token_ids == (260,)
    write(tmp_path, "generation_config.json", {"eos_token_id": [260, 258], "temperature": 0.7})
    assert read_hf_config(str(tmp_path)).eos_token_ids == (260, 258)
    write(tmp_path, "generation_config.json", {"eos_token_id": "<|im_end|>"})
    with pytest.raises(WeightsError, match="generation_config.json: eos_token_id '<|im_end|>' is not an id"):
        read_hf_config(str(tmp_path))


def test_engines_stop_at_every_eos_id_the_tokenizer_has():
    tokenizer = byte_tokenizer(("<answer> 1 </answer>",))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = ModelConfig.tiny(vocab_size=len(tokenizer), eos_token_ids=(eos, pad, 10**6))  # 10**6: not a token
    assert stop_token_ids(tokenizer, config) == [eos, pad]
    assert stop_token_ids(tokenizer, ModelConfig.tiny(vocab_size=len(tokenizer))) == [eos]
    engine = engine_policy(None, None, config, tokenizer, num_slots=1, max_turns=1, max_turn_tokens=8,
                           prompt_buckets=[16], obs_buckets=[16])
    assert engine.sampler.eos_ids == (eos, pad)
