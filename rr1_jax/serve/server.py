"""The OpenAI-compatible HTTP server (aiohttp): routes, bearer-token auth, request limits, errors, SSE streaming.

    POST /v1/chat/completions   the router (or, in model mode, the plain model) answers; `stream: true` -> SSE
    GET  /v1/models             the one served model
    GET  /healthz               liveness + slot / queue counts (no auth)

Responses follow OpenAI's chat-completions format; router mode adds `router_trace` (every routed call: model,
query, response, tokens, cost, latency; the total candidate cost) to the response, or to the last content chunk
of a stream. Client mistakes get a 4xx JSON error naming the problem and the fix (bad JSON 400, unknown model 404,
empty messages 400, over a limit 400, body too large 413, queue full 429, missing/wrong token 401, timeout 504).
A server fault is a 500 whose body holds only an error id; the log has the details with every secret (the bearer
token, the pool's API keys) replaced by `***`.

    with serve_in_thread(build_app(service)) as url: ...   # tests, benchmarks (background thread + event loop)
    run_app(build_app(service), host, port)                # launch/serve.py
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import traceback
import uuid
from typing import Iterator, Optional, Sequence

from aiohttp import web

from rr1_jax.serve.engine import EngineStopped, QueueFull
from rr1_jax.serve.jobs import JobResult
from rr1_jax.serve.protocol import (RequestError, chunk_body, completion_body, completion_id, error_body,
                                    models_body, parse_json, parse_request, sse, usage_body, usage_chunk)
from rr1_jax.serve.service import Service

log = logging.getLogger("rr1_jax.serve")
SERVICE = web.AppKey("service", Service)
_LOGGERS = ("rr1_jax.serve", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal")


class SecretFilter(logging.Filter):
    """Replaces every secret in a log record (message, arguments, traceback) with `***`."""

    def __init__(self, secrets: Sequence[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _error(status: int, message: str, kind: str, code: Optional[str] = None) -> web.Response:
    return web.json_response(error_body(message, kind, code=code), status=status)


def _middlewares(api_token: Optional[str], token_env: str, redactor: SecretFilter):
    expected = f"Bearer {api_token}".encode() if api_token else None

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            return await handler(request)
        except RequestError as err:
            headers = {"Retry-After": "1"} if err.status == 429 else None
            return web.json_response(err.body(), status=err.status, headers=headers)
        except web.HTTPException as err:  # aiohttp's own: unknown route 404, wrong method 405, body too large 413
            if err.status < 400:
                raise
            message = {413: "request body is too large; send at most the server's max_body_bytes"}.get(
                err.status, f"{err.reason}: {request.method} {request.path}")
            return _error(err.status, message, "invalid_request_error")
        except EngineStopped as err:
            return _error(503, f"{err}; see the server log", "server_error")
        except ConnectionResetError:  # the client went away mid-stream: nobody to answer, not a server fault
            log.info("client disconnected: %s %s", request.method, request.path)
            raise
        except Exception:  # a server fault: no detail in the body, the redacted traceback in the log
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s on %s %s\n%s", error_id, request.method, request.path,
                      redactor.redact(traceback.format_exc()))
            return _error(500, f"internal server error (id {error_id}); the server log has the details",
                          "server_error")

    @web.middleware
    async def auth(request: web.Request, handler):
        if expected is not None and request.path != "/healthz":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise RequestError(f"missing or invalid API key: send 'Authorization: Bearer <token>' with the "
                                   f"token the server was started with (${token_env})", status=401,
                                   kind="authentication_error", code="invalid_api_key")
        return await handler(request)

    return [errors, auth]


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_large = RequestError(f"request body is larger than this server's limit of {limit} bytes; send a "
                             f"shorter conversation", status=413, code="request_too_large")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    service: Service = request.app[SERVICE]
    raw = await _read_body(request, service.config.max_body_bytes)
    req = parse_request(parse_json(raw), service.config.model_name, service.limits, service.router)
    job = service.make_job(req)
    try:
        service.batcher.submit(job)
    except QueueFull as err:
        raise RequestError(f"the server is busy ({err}); retry shortly", status=429, code="queue_full",
                           kind="rate_limit_error") from None
    try:
        if req.stream:
            return await _stream(request, service, req, job)
        try:
            result: JobResult = await asyncio.wait_for(asyncio.shield(job.done), req.timeout_s)
        except asyncio.TimeoutError:
            raise _timeout(req.timeout_s) from None
    finally:
        if not job.done.done():
            service.batcher.cancel(job)
    return web.json_response(completion_body(completion_id(), req.model, result.content, result.finish_reason,
                                             usage_body(result.prompt_tokens, result.completion_tokens),
                                             _extra(result)))


def _timeout(seconds: float) -> RequestError:
    return RequestError(f"the request did not finish within {seconds:g}s; raise 'timeout' (up to the server's "
                        f"limit) or lower 'max_routed_calls' / 'max_tokens'", status=504, code="timeout",
                        kind="timeout_error")


def _extra(result: JobResult) -> dict:
    return {"router_trace": result.trace} if result.trace is not None else {}


async def _stream(request: web.Request, service: Service, req, job) -> web.StreamResponse:
    """SSE: a role chunk, content deltas, a finish chunk (with router_trace), the usage chunk if asked, [DONE]."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    cid, model, usage = completion_id(), req.model, req.include_usage
    await response.write(sse(chunk_body(cid, model, {"role": "assistant", "content": ""}, include_usage=usage)))
    deadline = asyncio.get_running_loop().time() + req.timeout_s
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                item = await asyncio.wait_for(job.deltas.get(), max(remaining, 0.0))
            except asyncio.TimeoutError:
                raise _timeout(req.timeout_s) from None
            if not isinstance(item, str):
                break
            await response.write(sse(chunk_body(cid, model, {"content": item}, include_usage=usage)))
        result: JobResult = job.done.result()
        await response.write(sse(chunk_body(cid, model, {}, result.finish_reason, _extra(result), usage)))
        if usage:
            await response.write(sse(usage_chunk(cid, model, usage_body(result.prompt_tokens,
                                                                        result.completion_tokens))))
        await response.write(sse("[DONE]"))
    except RequestError as err:  # headers are sent: the error travels as an SSE event the clients raise
        await response.write(sse(err.body()))
    except EngineStopped as err:
        await response.write(sse(error_body(f"{err}; see the server log", "server_error")))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in a stream\n%s", error_id, traceback.format_exc())
        await response.write(sse(error_body(f"internal server error (id {error_id}); the server log has the "
                                            f"details", "server_error")))
    await response.write_eof()
    return response


async def list_models(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    return web.json_response(models_body(service.config.model_name, service.created))


async def healthz(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    ok = service.batcher.running
    body = {"status": "ok" if ok else "stopped", "mode": service.config.mode, "model": service.config.model_name,
            **service.batcher.stats()}
    if service.batcher.failure is not None:
        body["error"] = type(service.batcher.failure).__name__
    return web.json_response(body, status=200 if ok else 503)


def build_app(service: Service, api_token: Optional[str] = None, token_env: str = "RR1_SERVE_TOKEN"
              ) -> web.Application:
    """The aiohttp application; `api_token` (None: no auth) is compared in constant time and never logged."""
    redactor = SecretFilter([api_token or ""] + service.secrets())
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(redactor)
    app = web.Application(client_max_size=service.config.max_body_bytes,
                          middlewares=_middlewares(api_token, token_env, redactor))
    app[SERVICE] = service
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/healthz", healthz)

    async def start(app):
        await service.start()

    async def stop(app):
        await service.stop()
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(redactor)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def run_app(app: web.Application, host: str, port: int) -> None:
    """Serve until interrupted (launch/serve.py)."""
    web.run_app(app, host=host, port=port, access_log=None, handler_cancellation=True, print=None)


@contextlib.contextmanager
def serve_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the app on its own event loop in a daemon thread; yields the base URL (`http://host:port/v1`)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    started, failure, bound = threading.Event(), [], []

    async def start():
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound.append(site._server.sockets[0].getsockname()[1])

    def serve():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except Exception as err:  # reported to the caller below
            failure.append(err)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="rr1-serve", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join(timeout=30)
        loop.run_until_complete(runner.cleanup())
        loop.close()
        raise RuntimeError(f"server could not start on {host}:{port}: {type(failure[0]).__name__}: {failure[0]}")
    try:
        yield f"http://{host}:{bound[0]}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
