"""Request validation and wire format without a server: every bad field is one RequestError naming it."""
import json

import pytest

from rr1_jax.serve.protocol import (Limits, RequestError, chunk_body, parse_json, parse_request, sse,
                                    usage_chunk)

LIMITS = Limits(max_tokens=64, max_routed_calls=2, timeout_s=30.0, max_cost=5.0)
OK = {"model": "r", "messages": [{"role": "user", "content": "q?"}]}


def parse(router=True, **fields):
    return parse_request({**OK, **fields}, "r", LIMITS, router)


def test_defaults_limits_and_text_parts():
    req = parse()
    assert (req.max_tokens, req.max_routed_calls, req.max_cost, req.timeout_s, req.seed, req.stream) == (
        64, 2, 5.0, 30.0, None, False)
    req = parse(messages=[{"role": "user", "content": "first"}, {"role": "assistant", "content": None},
                          {"role": "user", "content": [{"type": "text", "text": "last "}, {"type": "text",
                                                                                           "text": "one"}]}],
                max_completion_tokens=8, max_routed_calls=0, max_cost=0, timeout=1.5, seed=0, stream=True,
                stream_options={"include_usage": True}, temperature=0.3)
    assert req.question == "last one" and (req.max_tokens, req.max_routed_calls, req.max_cost, req.timeout_s,
                                            req.seed, req.include_usage) == (8, 0, 0.0, 1.5, 0, True)


@pytest.mark.parametrize("fields, param, status", [
    ({"model": None}, "model", 400), ({"model": "other"}, "model", 404), ({"messages": "hi"}, "messages", 400),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages", 400),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages", 400),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": " "}]}, "messages", 400),
    ({"max_tokens": 0}, "max_tokens", 400), ({"max_tokens": 65}, "max_tokens", 400),
    ({"max_tokens": "8"}, "max_tokens", 400), ({"max_cost": -1}, "max_cost", 400), ({"max_cost": 6}, "max_cost", 400),
    ({"timeout": 0}, "timeout", 400), ({"timeout": 31}, "timeout", 400), ({"seed": "7"}, "seed", 400),
    ({"n": 3}, "n", 400), ({"stream": "yes"}, "stream", 400), ({"tools": [{"type": "function"}]}, "tools", 400),
    ({"logprobs": True}, "logprobs", 400), ({"response_format": {"type": "json_object"}}, "response_format", 400),
    ({"stream": True, "stream_options": "usage"}, "stream_options", 400),
])
def test_bad_fields_name_themselves(fields, param, status):
    with pytest.raises(RequestError) as info:
        parse(**fields)
    assert info.value.param == param and info.value.status == status
    assert info.value.body()["error"]["param"] == param


def test_model_mode_needs_no_user_message_and_json_errors():
    assert parse(router=False, messages=[{"role": "system", "content": "s"}]).messages[0]["role"] == "system"
    for raw in (b"{", b"\xff", b"3"):
        with pytest.raises(RequestError, match="JSON"):
            parse_json(raw)


def test_chunks_and_sse():
    chunk = chunk_body("id", "m", {"content": "x"}, include_usage=True)
    assert chunk["usage"] is None and chunk["choices"][0]["delta"] == {"content": "x"}
    assert "usage" not in chunk_body("id", "m", {})
    assert usage_chunk("id", "m", {"total_tokens": 3})["choices"] == []
    event = sse({"a": 1})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and json.loads(event[6:]) == {"a": 1}
    assert sse("[DONE]") == b"data: [DONE]\n\n"
