"""Upstream prompt texts (pinned by sha256), the pool-driven template builder, chat rendering, helper prompt."""
import hashlib

import pytest

from rr1_jax.rollout.candidates import ROUTER_R1_POOL, Candidate, CandidatePool
from rr1_jax.rollout.prompts import (AGENT_PROMPT, PROMPT_TEMPLATE_LLAMA, PROMPT_TEMPLATE_QWEN, agent_message,
                                     build_policy_template, fill_template, render_prompt, template_family_for_model,
                                     template_for_pool, unwrap_agent_message)


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_upstream_texts_are_exact():
    assert (len(PROMPT_TEMPLATE_QWEN), sha(PROMPT_TEMPLATE_QWEN)) == (
        4496, "ba0c780bd10718904371c27cfdd2cfc3300e4d164612054989cfb2032ddb0f29")
    assert (len(PROMPT_TEMPLATE_LLAMA), sha(PROMPT_TEMPLATE_LLAMA)) == (
        4844, "9a5162b42686690de9647e233c2e4a923169025eff0d11a24f9386e9c4fa8a4f")
    assert (len(AGENT_PROMPT), sha(AGENT_PROMPT)) == (
        1049, "501cb31d456f66a232918743e899ba3909d9bd88e244c22703d3ba56b363d1eb")
    assert PROMPT_TEMPLATE_QWEN.startswith("\nAnswer the given question.")
    assert PROMPT_TEMPLATE_QWEN.endswith("Question: {question}\n\n")


def test_template_follows_the_pool():
    pool = CandidatePool([
        Candidate("Alpha-1B", "org/alpha", "http://127.0.0.1:1/v1", "K", 0.1, description="Alpha knows {braces}."),
        Candidate("Beta-2B", "org/beta", "http://127.0.0.1:1/v1", "K", 0.2, description="Beta is big."),
    ])
    template = template_for_pool(pool)
    assert "selected from [Alpha-1B, Beta-2B]." in template
    assert "Alpha-1B:Alpha knows {braces}.\n\nBeta-2B:Beta is big.\n\nIf you find" in template
    assert "Qwen2.5" not in template
    # braces in descriptions survive filling (str.replace, not format_map)
    assert "Alpha knows {braces}." in fill_template(template, "q")
    assert template_for_pool(pool, ["Beta-2B"]).count("Alpha") == 0
    # the default pool in another order gives another (non-upstream) prompt
    assert template_for_pool(ROUTER_R1_POOL, ROUTER_R1_POOL.names[:6][::-1]) != PROMPT_TEMPLATE_QWEN


def test_template_errors_name_the_fix():
    undescribed = Candidate("X", "org/x", "http://127.0.0.1:1/v1", "K", 0.1)
    with pytest.raises(ValueError, match="no description"):
        build_policy_template([undescribed])
    with pytest.raises(ValueError, match="not in the pool"):
        template_for_pool(ROUTER_R1_POOL, ["GPT-4"])
    with pytest.raises(ValueError, match="family"):
        build_policy_template(ROUTER_R1_POOL.candidates, "mistral")


def test_fill_and_render_like_upstream(tokenizer):
    filled = fill_template(PROMPT_TEMPLATE_QWEN, "  who wrote hamlet ")
    assert filled.endswith("Question: who wrote hamlet?\n\n") and "{question}" not in filled
    assert fill_template(PROMPT_TEMPLATE_QWEN, "why?").endswith("Question: why?\n\n")
    ids = render_prompt(tokenizer, "who wrote hamlet", PROMPT_TEMPLATE_QWEN)
    text = tokenizer.decode(ids)
    assert text == f"<|im_start|>user\n{filled}<|im_end|>\n<|im_start|>assistant\n"
    assert template_family_for_model("Qwen/Qwen2.5-3B-Instruct") == "qwen"
    assert template_family_for_model("meta-llama/Llama-3.2-3B-Instruct") == "llama"


def test_agent_message_round_trip():
    message = agent_message(" What is 2+2? {x}")
    assert message.endswith("Here is the sub-question for you to assist with:  What is 2+2? {x}\n\n")
    assert unwrap_agent_message(message) == " What is 2+2? {x}"
    assert unwrap_agent_message(agent_message("")) == ""
    assert unwrap_agent_message("What is 2+2?") is None
