"""The OpenAI chat-completions wire format: request parsing and validation, response bodies, SSE chunks, errors.

Pure functions and dataclasses, no I/O. Every problem with a request raises one `RequestError` whose message
names the field and the fix; the server turns it into OpenAI's error body `{"error": {"message", "type", "param",
"code"}}` with the given 4xx status (the official clients map 400/401/404/413/429 to their exception types).

Accepted request fields: `model`, `messages` (roles system / developer / user / assistant / tool; content a string
or a list of text parts), `stream`, `stream_options.include_usage`, `max_tokens` / `max_completion_tokens`,
`seed`, `n` (must be 1) and the extensions `max_routed_calls`, `max_cost` (candidate cost budget, in the pool's
metered unit: completion tokens × $ per 1M output tokens) and `timeout` (seconds). Sampling fields (`temperature`,
`top_p`, …) are accepted and ignored: the server decodes with the sampling rule it was started with. Fields that
ask for something the router cannot do (`tools`, `functions`, `response_format` other than text, `logprobs`)
are rejected.
"""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any, Optional

ROLES = ("system", "developer", "user", "assistant", "tool")
_UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call")


class RequestError(Exception):
    """A client error: HTTP `status`, an OpenAI error `type`/`code`, the offending `param`."""

    def __init__(self, message: str, status: int = 400, param: Optional[str] = None,
                 code: Optional[str] = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.param, self.code, self.kind = message, status, param, code, kind

    def body(self) -> dict:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(message: str, kind: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's caps; a request may ask for less, never more (asking for more is a 400 naming the cap)."""

    max_tokens: int  # policy completion tokens per request (all turns)
    max_routed_calls: int  # candidate calls per request (router mode; 0 in model mode)
    timeout_s: float  # overall time per request (also the default)
    max_cost: Optional[float] = None  # candidate cost per request (None: no cap unless the request sets one)


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """A validated request; limits are already resolved against the server's `Limits`."""

    model: str
    messages: list  # [{"role": str, "content": str}] with text parts joined
    stream: bool
    include_usage: bool
    max_tokens: int
    max_routed_calls: int
    max_cost: Optional[float]
    timeout_s: float
    seed: Optional[int]

    @property
    def question(self) -> str:
        """The last user message (router mode)."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"request body is not valid JSON ({err}); send a JSON object with 'model' and "
                           f"'messages'", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}; send "
                           f"{{\"model\": ..., \"messages\": [...]}}", code="invalid_json")
    return body


def _int(body: dict, name: str, low: int, high: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{name}' must be an integer, got {value!r}", param=name)
    if value < low:
        raise RequestError(f"'{name}'={value} must be >= {low}", param=name)
    if value > high:
        raise RequestError(f"'{name}'={value} exceeds this server's limit of {high}; ask for at most {high}",
                           param=name, code="over_limit")
    return value


def _number(body: dict, name: str, high: Optional[float], default: Optional[float],
            positive: bool = False) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise RequestError(f"'{name}' must be a number, got {value!r}", param=name)
    if value < 0 or (positive and value == 0):
        raise RequestError(f"'{name}'={value} must be {'> 0' if positive else '>= 0'}", param=name)
    if high is not None and value > high:
        raise RequestError(f"'{name}'={value} exceeds this server's limit of {high}; ask for at most {high}",
                           param=name, code="over_limit")
    return float(value)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise RequestError(f"{where}: only text content parts ({{\"type\": \"text\", \"text\": ...}}) "
                                   f"are supported", param="messages")
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise RequestError(f"{where}: content must be a string or a list of text parts", param="messages")


def parse_messages(value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise RequestError("'messages' must be a non-empty list of {\"role\", \"content\"} objects",
                           param="messages", code="empty_messages" if value == [] else None)
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise RequestError(f"messages[{i}] needs a 'role' among {list(ROLES)}", param="messages")
        messages.append({"role": m["role"], "content": _text(m.get("content"), f"messages[{i}]")})
    return messages


def parse_request(body: dict, served: str, limits: Limits, router: bool) -> ChatRequest:
    """Validate a chat-completions body for the model `served`; raises `RequestError`."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(f"'model' is required; this server serves {served!r}", param="model")
    if model != served:
        raise RequestError(f"model {model!r} does not exist here; use {served!r} (GET /v1/models lists it)",
                           status=404, param="model", code="model_not_found")
    messages = parse_messages(body.get("messages"))
    users = [m["content"] for m in messages if m["role"] == "user"]
    if router and not (users and users[-1].strip()):
        raise RequestError("the router needs a non-empty user message: the last one is the question",
                           param="messages", code="empty_messages")
    for name in _UNSUPPORTED:
        if body.get(name) not in (None, [], "none"):
            raise RequestError(f"'{name}' is not supported by this server; remove it", param=name)
    if body.get("logprobs"):
        raise RequestError("'logprobs' is not supported by this server; remove it", param="logprobs")
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise RequestError("only response_format {\"type\": \"text\"} is supported", param="response_format")
    _int(body, "n", 1, 1, 1)  # one choice per request
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise RequestError(f"'stream' must be true or false, got {stream!r}", param="stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise RequestError("'stream_options' is only allowed when 'stream' is true", param="stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object such as {\"include_usage\": true}",
                           param="stream_options")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return ChatRequest(
        model=model, messages=messages, stream=bool(stream), include_usage=bool((options or {}).get("include_usage")),
        max_tokens=_int(body, name, 1, limits.max_tokens, limits.max_tokens),
        max_routed_calls=_int(body, "max_routed_calls", 0, limits.max_routed_calls, limits.max_routed_calls),
        max_cost=_number(body, "max_cost", limits.max_cost, limits.max_cost),
        timeout_s=_number(body, "timeout", limits.timeout_s, limits.timeout_s, positive=True),
        seed=None if body.get("seed") is None else _int(body, "seed", -(1 << 63), (1 << 63) - 1, 0))


# ---- responses ----
def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(cid: str, model: str, content: str, finish_reason: str, usage: dict,
                    extra: Optional[dict] = None) -> dict:
    body = {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason, "logprobs": None}],
            "usage": usage}
    body.update(extra or {})
    return body


def chunk_body(cid: str, model: str, delta: dict, finish_reason: Optional[str] = None,
               extra: Optional[dict] = None, include_usage: bool = False) -> dict:
    """One `chat.completion.chunk`; with include_usage every chunk but the usage one carries `usage: null`."""
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
    if include_usage:
        body["usage"] = None
    body.update(extra or {})
    return body


def usage_chunk(cid: str, model: str, usage: dict) -> dict:
    """The last chunk of a stream with `stream_options.include_usage`: no choices, the request's usage."""
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [], "usage": usage}


def sse(data) -> bytes:
    """One server-sent event (`data: …\\n\\n`); `data` is a JSON-able object or the literal "[DONE]"."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode("utf-8")


def models_body(model: str, created: int) -> dict:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created,
                                         "owned_by": "rr1_jax"}]}
