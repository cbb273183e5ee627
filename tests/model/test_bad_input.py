"""User mistakes get one clear error naming the file and the problem."""
import json
import os

import numpy as np
import pytest

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.hf_config import WeightsError
from rr1_jax.model.tokenizer import check_tokenizer_matches, load_tokenizer
from rr1_jax.model.weights import load_hf_model, load_model, resolve_model_path
from tests.model.hf_fixtures import make_hf_model


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(WeightsError, match="model directory not found"):
        load_hf_model(str(tmp_path / "nope"))
    with pytest.raises(WeightsError, match=r"config.json: file not found"):
        load_hf_model(str(tmp_path))
    make_hf_model("llama_untied", str(tmp_path))
    os.remove(tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="no model.safetensors"):
        load_hf_model(str(tmp_path))
    with pytest.raises(WeightsError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))


def test_unsupported_architecture(tmp_path):
    make_hf_model("llama_untied", str(tmp_path))
    raw = json.loads((tmp_path / "config.json").read_text())
    raw.update(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"])
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match=r"config.json: unsupported architecture 'gpt_neox'"):
        load_hf_model(str(tmp_path))


def test_llama_attention_bias_is_refused(tmp_path):
    """HF Llama with attention_bias has an o_proj bias too, which this model lacks: refuse, never drop it."""
    make_hf_model("llama_untied", str(tmp_path))
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["attention_bias"] = True
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="attention_bias=true .* not supported for llama"):
        load_hf_model(str(tmp_path))


@pytest.mark.parametrize("tensor, what", [("rope_freqs.weight", "RoPE frequency scaling"),
                                          ("blk.0.attn_output.bias", "attention output bias")])
def test_gguf_features_the_model_lacks_are_refused(tmp_path, tensor, what):
    import gguf  # a runtime requirement
    path = str(tmp_path / "model.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.add_tensor(tensor, np.ones(8, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(WeightsError, match=f"{what} .* not supported in GGUF files; load the model's HF"):
        load_model(path)


def test_unsupported_rope_type(tmp_path):
    make_hf_model("llama_untied", str(tmp_path))
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="rope type 'yarn' is not supported"):
        load_hf_model(str(tmp_path))


@pytest.mark.parametrize("damage", ["truncate", "garbage_header"])
def test_corrupt_safetensors(tmp_path, damage):
    make_hf_model("llama_untied", str(tmp_path))
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:8] + b"\xff" * (len(data) - 8))
    with pytest.raises(WeightsError, match=r"model.safetensors: corrupt safetensors file"):
        load_hf_model(str(tmp_path))


def test_weights_of_another_size(tmp_path):
    make_hf_model("llama_untied", str(tmp_path))
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["intermediate_size"] = 96
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="checkpoint shape .* does not match"):
        load_hf_model(str(tmp_path))


def test_tokenizer_vocab_mismatch(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(300)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="w0").save_pretrained(str(tmp_path))
    tok = load_tokenizer(str(tmp_path))
    check_tokenizer_matches(tok, ModelConfig.tiny(vocab_size=512))
    with pytest.raises(WeightsError, match="tokenizer has 300 tokens but the model's vocabulary has 256"):
        check_tokenizer_matches(tok, ModelConfig.tiny(vocab_size=256), where=str(tmp_path))
    with pytest.raises(WeightsError, match="tokenizer directory not found"):
        load_tokenizer(str(tmp_path / "absent"))


def test_unset_env_var_in_model_path(monkeypatch):
    monkeypatch.delenv("RR1_TEST_UNSET_PATH", raising=False)
    with pytest.raises(WeightsError, match="environment variable is not set"):
        resolve_model_path("$RR1_TEST_UNSET_PATH")


def test_invalid_model_config():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        ModelConfig.tiny(num_heads=3, num_kv_heads=2)
    with pytest.raises(ValueError, match="unknown model family"):
        ModelConfig.named("gpt5")
