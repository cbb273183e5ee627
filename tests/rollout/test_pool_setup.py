"""open_pool (rollout/pool_setup.py): a remote pool's API keys are checked when the run is set up."""
import contextlib
import json

import ml_collections
import pytest

from rr1_jax.rollout.candidates import NVIDIA_NIM_KEY_ENV
from rr1_jax.rollout.pool_setup import PoolSetupError, open_pool


def _pool_cfg(kind):
    return ml_collections.ConfigDict(dict(kind=kind, cache_path="", max_concurrency=4, latency_scale=0.0,
                                          simulated_seed=0))


def test_router_r1_pool_needs_its_key_before_anything_else(monkeypatch):
    monkeypatch.delenv(NVIDIA_NIM_KEY_ENV, raising=False)
    with contextlib.ExitStack() as stack, pytest.raises(PoolSetupError, match=f"{NVIDIA_NIM_KEY_ENV} are not set"):
        open_pool(_pool_cfg("router_r1"), None, stack)
    monkeypatch.setenv(NVIDIA_NIM_KEY_ENV, "k")
    with contextlib.ExitStack() as stack:
        pool, client = open_pool(_pool_cfg("router_r1"), None, stack)
    assert len(pool.names) == 6 and client.require_keys


def test_json_pool_names_each_missing_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("RR1_TEST_KEY_A", raising=False)
    monkeypatch.setenv("RR1_TEST_KEY_B", "k")
    entries = [dict(name=n, model_id=n.lower(), base_url="http://127.0.0.1:9/v1", api_key_env=env,
                    output_price_per_1m=1.0, input_price_per_1m=1.0, description=n)
               for n, env in (("A", "RR1_TEST_KEY_A"), ("B", "RR1_TEST_KEY_B"))]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(entries))
    with contextlib.ExitStack() as stack, pytest.raises(PoolSetupError, match=r"RR1_TEST_KEY_A are not set"):
        open_pool(_pool_cfg(str(path)), None, stack)
