"""Shared serving fixtures: the synthetic task, the toy router (real engine, deterministic routes), a simulated
candidate pool with a fixed latency, and one router server per module (compiled once, shared by the tests)."""
import contextlib
import os

import openai
import pytest

from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
from rr1_jax.rollout.pool import PoolConfig
from rr1_jax.rollout.simulated_pool import (SIMULATED_KEY_ENV, SimulatedPoolConfig, SimulatedPoolServer,
                                            simulated_candidate_pool)
from rr1_jax.serve.server import build_app, serve_in_thread
from rr1_jax.serve.service import ServeConfig, Service
from rr1_jax.serve.toy_policy import toy_router_policy

TOKEN = "serve-test-token-7d1c"
POOL_KEY = "pool-key-never-shown-42"
CALL_LATENCY_S = 0.3
THINK_STEPS = 2
TEMPLATE = "Ask <search> Model: query </search> or reply <answer> x </answer>. Question: {question}\n"
ROUTER_CONFIG = ServeConfig(num_slots=4, segment_steps=8, max_turn_tokens=16, max_routed_calls=2,
                            max_obs_length=200, max_prompt_tokens=256, widths=(256,), timeout_s=30.0)


@pytest.fixture(scope="session")
def task():
    return make_synthetic_task(SyntheticConfig(seed=0, num_train=16, num_test=8, countries_per_split=6,
                                               companies_per_split=6, albums_per_split=6))


@pytest.fixture(scope="session")
def fact(task):
    """(query the toy routes, the answer it gives): a capital the simulated Qwen candidate knows."""
    country = sorted(task.table.capital_of)[0]
    return f"What is the capital of {country}?", task.table.capital_of[country]


@pytest.fixture(scope="session")
def toy(fact):
    return toy_router_policy(route_query=fact[0], answer=fact[1], think_steps=THINK_STEPS)


@contextlib.contextmanager
def running_service(service, token=None):
    with serve_in_thread(build_app(service, api_token=token)) as url:
        yield url


@pytest.fixture(scope="module")
def pool_server(task):
    """A simulated pool answering every call after CALL_LATENCY_S; its API key env var holds a secret."""
    old = os.environ.get(SIMULATED_KEY_ENV)
    os.environ[SIMULATED_KEY_ENV] = POOL_KEY
    server = SimulatedPoolServer(task.table, config=SimulatedPoolConfig(latency_mean_s=CALL_LATENCY_S,
                                                                        latency_std_s=0.0))
    try:
        with server as url:
            yield server, url
    finally:
        if old is None:
            os.environ.pop(SIMULATED_KEY_ENV, None)
        else:
            os.environ[SIMULATED_KEY_ENV] = old


@pytest.fixture(scope="module")
def router(toy, pool_server):
    """(base URL, service, pool server) of a router server with bearer auth."""
    server, pool_url = pool_server
    service = Service(toy, ROUTER_CONFIG, simulated_candidate_pool(pool_url),
                      PoolConfig(require_keys=False, attempt_timeout_s=10.0, deadline_s=20.0), TEMPLATE)
    with running_service(service, TOKEN) as url:
        yield url, service, server


@pytest.fixture(scope="module")
def client(router):
    return openai.OpenAI(base_url=router[0], api_key=TOKEN, max_retries=0, timeout=60.0)
