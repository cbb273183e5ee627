"""launch/serve.py's path: a config file + a policy spec -> pool (simulated, in-process) + template + service."""
import contextlib
import importlib
import os
import subprocess
import sys

import openai

from rr1_jax.eval.scoring import reply_answer
from rr1_jax.serve.from_config import build_service, describe
from tests.serve.conftest import running_service


def test_tiny_config_with_the_toy_policy_routes_through_the_config_pool():
    config = importlib.import_module("configs.tiny").get_config()
    with contextlib.ExitStack() as stack:
        service = build_service(config, "toy", "router", stack, max_prompt_tokens=512, max_obs_length=200,
                                num_slots=2, warmup=False)
        assert service.limits.max_routed_calls == config.rollout.max_turns
        assert "Qwen2.5-7B-Instruct" in service.template and "rr1-router" in describe(service)
        with running_service(service) as url:
            client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120.0)
            response = client.chat.completions.create(model="rr1-router",
                                                      messages=[{"role": "user", "content": "Which capital?"}])
    trace = response.router_trace
    assert trace["num_calls"] == 1 and trace["calls"][0]["error"] is None and trace["finished"] == "answer"
    assert reply_answer(trace["calls"][0]["response"]) == response.choices[0].message.content + "."


def test_serve_command_names_a_bad_policy_in_one_line(tmp_path):
    """A policy that is neither a model nor a run is one `serve: ...` line naming both, not a traceback."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, os.path.join(repo, "launch", "serve.py"), f"--policy={tmp_path}"],
                          capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"serve: {tmp_path}: neither an HF model directory")
