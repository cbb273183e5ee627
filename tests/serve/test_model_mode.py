"""`--mode=model`: a plain policy served as an ordinary OpenAI chat model (so it can sit in a candidate pool)."""
import contextlib

import openai
import pytest
from ml_collections import ConfigDict

from rr1_jax.serve.from_config import serve_config_from
from rr1_jax.serve.service import ServeConfig, Service
from tests.serve.conftest import THINK_STEPS, running_service

NAME = "toy-chat"
CONFIG = ServeConfig(mode="model", model_name=NAME, num_slots=2, segment_steps=4, max_turn_tokens=24,
                     max_prompt_tokens=64, widths=(64,), warmup=False)


@pytest.fixture(scope="module")
def chat(toy):
    with running_service(Service(toy, CONFIG)) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60.0)


def test_model_mode_chat_and_stream(chat, fact):
    """The toy's plain continuation of any prompt: N+3 thinking/route tokens, then EOS (not counted as text)."""
    expected = ("<think>ask" + "".join(f" a{i}" for i in range(1, THINK_STEPS + 1)) + "</think>"
                + f"<search> Qwen2.5-7B-Instruct: {fact[0]} </search>")
    messages = [{"role": "system", "content": "hi"}, {"role": "user", "content": "hello"}]
    response = chat.chat.completions.create(model=NAME, messages=messages)
    assert response.choices[0].message.content == expected and response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == THINK_STEPS + 4  # with the EOS
    assert not hasattr(response, "router_trace") or response.router_trace is None
    chunks = list(chat.chat.completions.create(model=NAME, messages=messages, stream=True,
                                               stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == expected and len(deltas) > 1  # streamed segment by segment (4 steps each)
    assert chunks[-1].usage.completion_tokens == THINK_STEPS + 4
    short = chat.chat.completions.create(model=NAME, messages=messages, max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2
    with pytest.raises(openai.BadRequestError, match="limit of 24"):
        chat.chat.completions.create(model=NAME, messages=messages, max_tokens=25)
    # a model-mode message list needs no user turn; an empty one is still an error
    assert chat.chat.completions.create(model=NAME, messages=[{"role": "system", "content": "x"}]).choices
    with pytest.raises(openai.BadRequestError):
        chat.chat.completions.create(model=NAME, messages=[])


def test_serve_config_from_a_training_config_and_bad_options():
    config = ConfigDict({"rollout": dict(max_turn_tokens=32, max_turns=3, max_obs_length=40, max_prompt_tokens=128)})
    serve = serve_config_from(config, "router", "ignored", num_slots=3, max_cost=None)
    assert (serve.model_name, serve.max_routed_calls, serve.max_turn_tokens, serve.num_slots) == (
        "rr1-router", 3, 32, 3)
    assert serve_config_from(config, "model", "smollm2").model_name == "smollm2"
    with pytest.raises(ValueError, match=r"unknown serving option\(s\) \['slots'\]"):
        serve_config_from(config, "router", "x", slots=2)
    with pytest.raises(ValueError, match="mode"):
        ServeConfig(mode="chat")
    with pytest.raises(ValueError, match="num_slots"):
        ServeConfig(num_slots=0)
    with pytest.raises(ValueError, match="needs a candidate pool"):
        with contextlib.suppress(TypeError):
            Service(type("P", (), {"tokenizer": None})(), ServeConfig())
