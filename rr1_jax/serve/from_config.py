"""A `Service` from an rr1_jax config file and a policy spec (what launch/serve.py runs).

The config supplies the candidate pool (`config.pool`: the simulated pool is started in-process, as training
does), the routing prompt (`config.prompt`) and the generation sizes (`config.rollout`: max_turns,
max_turn_tokens, max_obs_length, max_prompt_tokens); the policy spec supplies the weights: an HF directory
(e.g. a training run's export), a `.gguf`, `bundled:smollm2`, `tiny` (random weights: never routes) or `toy`
(rr1_jax/serve/toy_policy.py: routes once per question, then answers). Serving knobs (`ServeConfig` fields) are
given as keyword overrides.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

from rr1_jax.serve.service import ServeConfig, Service

TOY = "toy"


def load_served_policy(spec: str, task=None):
    """A `LoadedPolicy` for a spec; `toy` asks the first test question of the synthetic task (if given)."""
    if spec == TOY:
        from rr1_jax.serve.toy_policy import toy_router_policy

        if task is None:
            return toy_router_policy()
        country = sorted(task.table.capital_of)[0]
        return toy_router_policy(route_query=f"What is the capital of {country}?",
                                 answer=task.table.capital_of[country])
    from rr1_jax.eval.evaluate import load_policy

    return load_policy(spec)


def serve_config_from(config, mode: str, policy_label: str, **overrides) -> ServeConfig:
    """`ServeConfig` with the config's rollout sizes, then the overrides (None values are ignored)."""
    r = config.rollout
    fields = dict(mode=mode, model_name="rr1-router" if mode == "router" else policy_label,
                  max_turn_tokens=r.max_turn_tokens, max_routed_calls=r.max_turns, max_obs_length=r.max_obs_length,
                  max_prompt_tokens=r.max_prompt_tokens)
    known = {f.name for f in dataclasses.fields(ServeConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown serving option(s) {unknown}; valid ones: {sorted(known)}")
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return ServeConfig(**fields)


def build_service(config, policy_spec: str, mode: str, stack: contextlib.ExitStack,
                  **overrides) -> Service:
    """The service for `config` + `policy_spec`; a simulated pool server is entered into `stack`."""
    if not policy_spec:
        raise ValueError("no policy given: pass --policy=<HF export dir>, a .gguf, bundled:smollm2, tiny or toy")
    pool = pool_config = template = task = None
    if mode == "router":
        from rr1_jax.rl.run_setup import load_run_data
        from rr1_jax.rollout.pool_setup import open_pool

        task = load_run_data(config).task if config.pool.kind == "simulated" else None
        pool, pool_config = open_pool(config.pool, task, stack)
    policy = load_served_policy(policy_spec, task)
    if mode == "router":
        template = served_template(config, pool, policy)
    serve = serve_config_from(config, mode, getattr(policy, "label", policy_spec), **overrides)
    return Service(policy, serve, pool, pool_config, template)


def served_template(config, pool, policy) -> str:
    """The config's routing prompt; a policy read from a training run is prompted as it was trained."""
    from rr1_jax.rl.run_setup import routing_template

    return policy.trained_template(pool) or routing_template(config, pool)


def describe(service: Service, url: Optional[str] = None) -> str:
    """One line for the console: what is served where, with which limits."""
    c, lim = service.config, service.limits
    where = f" at {url}" if url else ""
    pool = f", pool {list(service.pool.names)}" if service.pool is not None else ""
    return (f"serving {c.model_name!r} ({c.mode} mode){where}: {c.num_slots} slots, cache {service.cache_len} "
            f"tokens/slot, max_tokens {lim.max_tokens}, max_routed_calls {lim.max_routed_calls}, timeout "
            f"{lim.timeout_s:g}s{pool}")
