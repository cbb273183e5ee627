"""Serve a router policy (or a plain chat model) behind the OpenAI chat-completions API.

    python launch/serve.py --config=configs/smollm2.py --policy=runs/smollm2/hf_export --port=8000
    python launch/serve.py --config=configs/tiny.py --policy=toy --max_prompt_tokens=512 --max_obs_length=256
    python launch/serve.py --config=configs/smollm2.py --policy=bundled:smollm2 --mode=model --port=8001

Any OpenAI client can then call it: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)
.chat.completions.create(model="rr1-router", messages=[...])`. Router mode runs the policy's multi-round routing
loop against the config's candidate pool (`config.pool`; the simulated pool is started in-process) and returns
the final answer, with every routed call in `router_trace`; `--mode=model` serves the policy as an ordinary chat
model, so a local model can sit in a candidate pool. Set `$RR1_SERVE_TOKEN` (or the variable `--token_env`
names) to require `Authorization: Bearer <token>`; the token is never printed or logged.
"""
import contextlib
import logging
import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rr1_jax.config_overrides import check_config_flags  # noqa: E402

_DEFAULT_CONFIG = os.path.join(_REPO, "configs", "tiny.py")  # whatever the working directory
if __name__ == "__main__":  # before absl, which applies --config.* overrides as it defines the flag
    check_config_flags(sys.argv, _DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG,
                                          "Config file (pool, prompt, rollout sizes).")
_POLICY = flags.DEFINE_string("policy", None, "HF export dir, a training run's workdir or <workdir>/ckpt/<step>, "
                              ".gguf, bundled:smollm2, tiny (random) or toy.")
_MODE = flags.DEFINE_enum("mode", "router", ["router", "model"], "router: Router-R1 loop; model: plain chat model.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind (loopback by default).")
_PORT = flags.DEFINE_integer("port", 8000, "Port.")
_NAME = flags.DEFINE_string("name", None, "Model name clients send (default: rr1-router / the policy's name).")
_TOKEN_ENV = flags.DEFINE_string("token_env", "RR1_SERVE_TOKEN", "Env var holding the bearer token (unset: no auth).")
_SLOTS = flags.DEFINE_integer("slots", 8, "Decode slots (requests generating at once).")
_SEGMENT = flags.DEFINE_integer("segment_steps", 16, "Decode steps per engine call.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 300.0, "Per-request time limit (default and cap).")
_MAX_COST = flags.DEFINE_float("max_cost", None, "Cap on candidate cost per request (metered unit).")
_MAX_QUEUE = flags.DEFINE_integer("max_queue", 256, "Queued requests before answering 429.")
_MAX_BODY = flags.DEFINE_integer("max_body_bytes", 1 << 20, "Largest request body.")
_SAMPLED = flags.DEFINE_bool("sampled", False, "Decode with upstream's sampling (T=1, top-p 0.95) instead of greedy.")
_WARMUP = flags.DEFINE_bool("warmup", True, "Compile every engine program before accepting requests.")
_MAX_PROMPT = flags.DEFINE_integer("max_prompt_tokens", None, "Override config.rollout.max_prompt_tokens.")
_MAX_OBS = flags.DEFINE_integer("max_obs_length", None, "Override config.rollout.max_obs_length.")
_MAX_TURN = flags.DEFINE_integer("max_turn_tokens", None, "Override config.rollout.max_turn_tokens.")
_MAX_CALLS = flags.DEFINE_integer("max_routed_calls", None, "Override config.rollout.max_turns.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rr1_jax.checkpoint import CheckpointError
    from rr1_jax.serve.from_config import build_service, describe
    from rr1_jax.serve.server import build_app, run_app

    token = os.environ.get(_TOKEN_ENV.value) or None
    with contextlib.ExitStack() as stack:
        try:
            service = build_service(
                _CONFIG.value, _POLICY.value, _MODE.value, stack, model_name=_NAME.value, num_slots=_SLOTS.value,
                segment_steps=_SEGMENT.value, timeout_s=_TIMEOUT.value, max_cost=_MAX_COST.value,
                max_queue=_MAX_QUEUE.value, max_body_bytes=_MAX_BODY.value, greedy=not _SAMPLED.value,
                warmup=_WARMUP.value, max_prompt_tokens=_MAX_PROMPT.value, max_obs_length=_MAX_OBS.value,
                max_turn_tokens=_MAX_TURN.value, max_routed_calls=_MAX_CALLS.value)
        except (ValueError, OSError, CheckpointError) as err:  # bad policy, config or keys: one clear message
            sys.exit(f"serve: {err}")
        url = f"http://{_HOST.value}:{_PORT.value}/v1"
        if token is None:
            print(f"no API token: set ${_TOKEN_ENV.value} to require 'Authorization: Bearer <token>'", flush=True)
        application = build_app(service, token, _TOKEN_ENV.value)

        async def ready(_):
            print(describe(service, url) + (" (bearer token required)" if token else ""), flush=True)

        application.on_startup.append(ready)
        print("compiling the engine…" if _WARMUP.value else "starting…", flush=True)
        run_app(application, _HOST.value, _PORT.value)


if __name__ == "__main__":
    flags.mark_flag_as_required("policy")
    app.run(main)
