"""Frozen parameters: no update, no weight decay, and no share of the clipping norm; the rest trains as before."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rr1_jax.rl.ppo_config import OptimConfig
from rr1_jax.rl.train_state import gradient_transform


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"embed": jax.random.normal(k1, (5, 3)), "layers": {"w": jax.random.normal(k2, (3, 3))}}


def test_frozen_top_level_params_stay_put_and_others_match_plain_adamw():
    params = _params()
    grads = jax.tree.map(lambda p: 100.0 * jnp.ones_like(p), params)  # large: clipping is active
    cfg = OptimConfig(lr=0.1, weight_decay=0.5, grad_clip=1.0)
    frozen = gradient_transform(OptimConfig(lr=0.1, weight_decay=0.5, grad_clip=1.0, frozen=("embed",)))
    direction, _ = frozen.update(grads, frozen.init(params), params)
    np.testing.assert_array_equal(direction["embed"], np.zeros((5, 3)))
    # the trained part sees the clipping norm of its own gradient only, as if the embedding were not there
    plain = gradient_transform(cfg)
    only_layers = {"layers": params["layers"]}
    want, _ = plain.update({"layers": grads["layers"]}, plain.init(only_layers), only_layers)
    np.testing.assert_allclose(direction["layers"]["w"], want["layers"]["w"], rtol=1e-6)
    assert np.abs(np.asarray(direction["layers"]["w"])).min() > 0


def test_no_frozen_names_is_plain_adamw():
    params = _params()
    grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
    ours = gradient_transform(OptimConfig(lr=0.1, weight_decay=0.01, grad_clip=1.0))
    ref = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.add_decayed_weights(0.01))
    got, _ = ours.update(grads, ours.init(params), params)
    want, _ = ref.update(grads, ref.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
