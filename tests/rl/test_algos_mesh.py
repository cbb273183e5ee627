"""Every algos function under jit on a 2x4 (data, tensor) mesh with batch-sharded inputs equals the unsharded result."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rr1_jax.rl import algos

pytestmark = pytest.mark.mesh

N, R, V = 8, 8, 5


def batch():
    rng = np.random.default_rng(7)
    lengths = np.array([8, 0, 3, 5, 8, 1, 6, 7])
    response = (np.arange(R)[None, :] < lengths[:, None]).astype(np.float32)
    policy = response.copy()
    policy[[0, 3, 6], [2, 1, 4]] = 0.0                      # a few observation tokens
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)
    return dict(response=response, policy=policy, rewards=f(N, R) * response, values=f(N, R), scores=f(N),
                logp=-np.abs(f(N, R)), old_logp=-np.abs(f(N, R)), ref_logp=-np.abs(f(N, R)), adv=f(N, R),
                returns=f(N, R), old_values=f(N, R), logits=f(N, R, V),
                group_ids=np.array([0, 0, 1, 1, 2, 2, 3, 4], np.int32))


CALLS = {
    "masked_whiten": lambda b: algos.masked_whiten(b["adv"], b["response"]),
    "kl_estimate": lambda b: algos.kl_estimate(b["logp"], b["ref_logp"], "low_var_kl"),
    "token_rewards": lambda b: algos.token_rewards(b["scores"], b["response"], old_logp=b["old_logp"],
                                                   ref_logp=b["ref_logp"], policy_mask=b["policy"], kl_coef=0.01),
    "gae": lambda b: algos.gae_advantages(b["rewards"], b["values"], b["response"], 0.9, 0.8),
    "gae_bridged": lambda b: algos.gae_advantages(b["rewards"], b["values"], b["response"], 0.9, 0.8,
                                                  bridge_observations=True, policy_mask=b["policy"]),
    "grpo": lambda b: algos.grpo_advantages(b["scores"], b["response"], b["group_ids"], 5),
    "policy_loss": lambda b: algos.policy_loss(b["logp"], b["old_logp"], b["adv"], b["policy"], 0.2),
    "value_loss": lambda b: algos.value_loss(b["values"], b["old_values"], b["returns"], b["response"], 0.5),
    "kl_loss": lambda b: algos.kl_loss(b["logp"], b["ref_logp"], b["policy"]),
    "entropy": lambda b: algos.entropy_from_logits(b["logits"]),
    "masked_mean_rows": lambda b: algos.masked_mean(b["adv"], b["response"], axis=1),
}


@pytest.mark.parametrize("batch_axes", [("data",), ("data", "tensor")], ids=["data", "data+tensor"])
def test_sharded_results_equal_unsharded(mesh_devices, batch_axes):
    mesh = Mesh(np.array(mesh_devices).reshape(2, 4), ("data", "tensor"))
    host = batch()
    unsharded = {name: jax.jit(fn)(host) for name, fn in CALLS.items()}
    shard_batch = lambda x: jax.device_put(x, NamedSharding(mesh, P(batch_axes, *([None] * (x.ndim - 1)))))
    sharded_inputs = jax.tree.map(shard_batch, host)
    assert len(sharded_inputs["adv"].sharding.device_set) == 8
    with jax.set_mesh(mesh):
        for name, fn in CALLS.items():
            result = jax.jit(fn)(sharded_inputs)
            for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(unsharded[name])):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5, err_msg=name)


def test_kl_controller_state_is_replicable_across_the_mesh(mesh_devices):
    mesh = Mesh(np.array(mesh_devices).reshape(2, 4), ("data", "tensor"))
    controller = jax.device_put(algos.make_kl_controller("adaptive", 0.1, target=0.02, horizon=1000.0),
                                NamedSharding(mesh, P()))
    updated = jax.jit(lambda c, kl: c.update(kl, 8))(controller, jnp.float32(0.04))
    np.testing.assert_allclose(float(updated.value), 0.1 * (1 + 0.2 * 8 / 1000), rtol=1e-6)
