"""Candidate pool definition: the Router-R1 pool's contents, name resolution (exact and upstream) and config loading."""
import dataclasses
import json

import pytest

from rr1_jax.rollout.candidates import (ROUTER_R1_POOL, ROUTER_R1_TRAIN_NAMES, Candidate, CandidatePool)

# Upstream API ids and $/1M output-token prices (spec §6.1), copied here so tests never read the spec.
UPSTREAM_PRICES = {
    "qwen/qwen2.5-7b-instruct": 0.30, "meta/llama-3.1-8b-instruct": 0.18, "meta/llama-3.1-70b-instruct": 0.88,
    "mistralai/mistral-7b-instruct-v0.3": 0.20, "mistralai/mixtral-8x22b-instruct-v0.1": 1.20,
    "google/gemma-2-27b-it": 0.80, "writer/palmyra-creative-122b": 1.80, "nvidia/llama3-chatqa-1.5-8b": 0.18,
}
PROMPT_NAMES = ("Qwen2.5-7B-Instruct", "LLaMA-3.1-8B-Instruct", "LLaMA-3.1-70B-Instruct", "Mistral-7B-Instruct",
                "Mixtral-8x22B-Instruct", "Gemma-2-27B-Instruct")


def test_router_r1_pool_has_the_six_prompt_models_then_two_unseen_all_priced():
    assert ROUTER_R1_TRAIN_NAMES == PROMPT_NAMES
    assert len(ROUTER_R1_POOL) == 8
    assert {c.model_id: c.output_price_per_1m for c in ROUTER_R1_POOL} == UPSTREAM_PRICES
    for cand in ROUTER_R1_POOL:
        assert cand.input_price_per_1m > 0 and cand.description and cand.max_tokens == 512
        assert cand.api_key_env.isupper()  # a variable name, not a secret
    gemma = ROUTER_R1_POOL.resolve("Gemma-2-27B-Instruct")
    assert gemma.temperature == 0.1
    assert all(c.temperature == 0.0 for c in ROUTER_R1_POOL if c is not gemma)


def test_descriptions_of_training_models_are_the_prompt_text():
    qwen = ROUTER_R1_POOL.resolve("Qwen2.5-7B-Instruct")
    assert qwen.description.startswith("Qwen2.5-7B-Instruct is a powerful Chinese-English instruction-tuned")
    assert qwen.description.endswith("multilingual capabilities across over 29 languages.")
    mixtral = ROUTER_R1_POOL.resolve("Mixtral-8x22B-Instruct")
    assert "39B active parameters out of 141B total" in mixtral.description


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_exact_resolution_is_case_insensitive_after_strip(name):
    assert ROUTER_R1_POOL.resolve(f"  {name.upper()} ", mode="exact").name == name
    assert ROUTER_R1_POOL.resolve(name, mode="upstream").name == name


@pytest.mark.parametrize("written, expected", [
    ("qwen", "Qwen2.5-7B-Instruct"),                     # any 'qwen' substring
    ("Qwen2.5-72B", "Qwen2.5-7B-Instruct"),
    ("my creative friend", "Palmyra-Creative-122B"),
    ("qwen-creative", "Qwen2.5-7B-Instruct"),            # qwen is tested before palmyra/creative
    ("llama-70b-8b", "LLaMA-3.1-70B-Instruct"),          # 70b before 8b
    ("LLaMA3-ChatQA-1.5-8B", "LLaMA3-ChatQA-1.5-8B"),
    ("llama 8b", "LLaMA-3.1-8B-Instruct"),
    ("Mistral", "Mistral-7B-Instruct"),
    ("mixtral-8x7b", "Mixtral-8x22B-Instruct"),
    ("gemma-7b", "Gemma-2-27B-Instruct"),
])
def test_upstream_resolution_reproduces_substring_rules_in_order(written, expected):
    assert ROUTER_R1_POOL.resolve(written, mode="upstream").name == expected
    assert ROUTER_R1_POOL.resolve(written, mode="exact") is None or written.strip().lower() == expected.lower()


@pytest.mark.parametrize("written", [
    "LLaMA-3.2-3B-Instruct",      # llama without 70b/51b/49b/8b: invalid upstream
    "llama-3.1-nemotron-51b-8b",  # 51b rule wins over 8b, and Nemotron is not in the pool (upstream: KeyError crash)
    "nemotron-super-49b-llama",
    "granite-3.0",                # mapped but unpriced upstream; not in our pool
    "GPT-4", "", "   ",
])
def test_upstream_resolution_rejects_invalid_and_unpriced_names(written):
    assert ROUTER_R1_POOL.resolve(written, mode="upstream") is None


def test_upstream_rules_match_custom_pool_by_display_name_or_model_id():
    by_id = Candidate(name="Cheap-Qwen", model_id="qwen/qwen2.5-7b-instruct", base_url="http://127.0.0.1:1/v1",
                      api_key_env="SIM_KEY", output_price_per_1m=0.1)
    by_name = Candidate(name="Mistral-7B-Instruct", model_id="sim/mistral", base_url="http://127.0.0.1:1/v1",
                        api_key_env="SIM_KEY", output_price_per_1m=0.2)
    pool = CandidatePool([by_id, by_name])
    assert pool.resolve("qwen anything", mode="upstream") is by_id
    assert pool.resolve("mistral", mode="upstream") is by_name
    assert pool.resolve("gemma", mode="upstream") is None   # rule matches but model is not in this pool
    assert pool.resolve("cheap-qwen") is by_id


def test_resolve_rejects_unknown_mode_and_tolerates_non_strings():
    with pytest.raises(ValueError, match="resolve mode"):
        ROUTER_R1_POOL.resolve("qwen", mode="fuzzy")
    assert ROUTER_R1_POOL.resolve(None) is None


def test_from_config_round_trips_and_is_json_able():
    config = json.loads(json.dumps(ROUTER_R1_POOL.to_config()))
    pool = CandidatePool.from_config(config)
    assert pool.candidates == ROUTER_R1_POOL.candidates
    assert "api_key" not in json.dumps(config).replace("api_key_env", "")


MINIMAL = {"name": "M", "model_id": "m", "base_url": "http://x", "api_key_env": "K", "output_price_per_1m": 1.0}


@pytest.mark.parametrize("entry, message", [
    ({**MINIMAL, "price": 1.0}, r"unknown key\(s\) \['price'\]"),
    ({k: v for k, v in MINIMAL.items() if k != "output_price_per_1m"}, r"missing required key\(s\) \['output_price"),
    ({**MINIMAL, "output_price_per_1m": -1.0}, "output_price_per_1m must be a number >= 0"),
    ({**MINIMAL, "max_tokens": 0}, "max_tokens must be a positive int"),
    ({**MINIMAL, "base_url": ""}, "base_url must be a non-empty string"),
])
def test_from_config_names_the_bad_field(entry, message):
    with pytest.raises(ValueError, match=message):
        CandidatePool.from_config([entry])


def test_pool_rejects_duplicates_and_empty():
    with pytest.raises(ValueError, match="duplicate candidate name"):
        CandidatePool.from_config([MINIMAL, {**MINIMAL, "name": " m "}])
    with pytest.raises(ValueError, match="at least one"):
        CandidatePool([])
    with pytest.raises(ValueError, match="must be a dict"):
        CandidatePool.from_config(["qwen"])


def test_candidate_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ROUTER_R1_POOL.candidates[0].output_price_per_1m = 0.0
