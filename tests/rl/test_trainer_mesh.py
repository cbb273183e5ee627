"""The trainer on 8 fake devices: checkpoint 1x8 fsdp -> restore 2x4 (data x tensor); sharded == single device."""
import jax
import pytest
from jax.sharding import PartitionSpec

from rr1_jax.checkpoint import TrainCheckpointer
from rr1_jax.generate.compile_count import count_compilations
from rr1_jax.parallel.mesh import make_mesh
from rr1_jax.rl.trainer import PPOTrainer, reshard_for_decode
from tests.rl.ppo_fixtures import (ACTOR_OPTIM, CRITIC_OPTIM, SCORES, max_abs_diff, params_copy,
                                   ppo_config, random_trajectories, tiny_models)

pytestmark = pytest.mark.mesh


def _trainer(mesh, **cfg):
    actor, critic = tiny_models()
    return PPOTrainer(actor, critic, ppo_config(**cfg), ACTOR_OPTIM, CRITIC_OPTIM, mesh, seed=0)


def test_checkpoint_from_fsdp_mesh_restores_onto_data_tensor_mesh(tmp_path, mesh_devices):
    fsdp = _trainer(make_mesh(data=1, fsdp=8, tensor=1, devices=mesh_devices))
    state = fsdp.init_state()
    assert state.actor["embed"].sharding.spec == PartitionSpec(None, "fsdp")  # really sharded before saving
    checkpointer = TrainCheckpointer(str(tmp_path / "ckpt"))
    checkpointer.save(1, state)
    checkpointer.close()

    target = _trainer(make_mesh(data=2, fsdp=1, tensor=4, devices=mesh_devices))
    step, restored, _ = TrainCheckpointer(str(tmp_path / "ckpt")).restore(target.abstract_state())
    assert step == 1
    assert max_abs_diff(params_copy(restored), params_copy(state)) == 0.0
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target.shardings)):
        assert got.sharding.is_equivalent_to(want, got.ndim)
    assert restored.actor["lm_head"].sharding.spec == PartitionSpec(None, "tensor")  # vocab over tensor


def test_reshard_for_decode_drops_fsdp_and_compiles_once(mesh_devices):
    mesh = make_mesh(data=1, fsdp=8, tensor=1, devices=mesh_devices)
    trainer = _trainer(mesh)
    params = trainer.actor_state(trainer.init_state())
    decode = reshard_for_decode(params, mesh)
    assert decode["embed"][...].sharding.spec == PartitionSpec()  # no fsdp all-gathers during decode
    assert max_abs_diff(params_copy(decode), params_copy(params)) == 0.0
    with count_compilations() as compiled:
        reshard_for_decode(params, mesh)
    assert compiled.count == 0


@pytest.mark.slow
@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_ppo_iteration_on_2x4_mesh_equals_single_device(mesh_devices, pack):
    traj, results = random_trajectories(), []
    for mesh in (make_mesh(devices=mesh_devices[:1]), make_mesh(data=2, fsdp=1, tensor=4, devices=mesh_devices)):
        trainer = _trainer(mesh, shuffle=True, pack_updates=pack)
        state, metrics = trainer.ppo_iteration(trainer.init_state(), traj, SCORES)
        results.append((params_copy((state.actor, state.critic)), metrics))
    (single, single_metrics), (sharded, sharded_metrics) = results
    assert max_abs_diff(single, sharded) <= 1e-4
    assert single_metrics.keys() == sharded_metrics.keys()
    for key, value in single_metrics.items():
        if key.endswith("clipfrac"):  # counts of exact ties (v == v_old on the first mini-batch): not continuous
            continue
        assert sharded_metrics[key] == pytest.approx(value, abs=1e-4, rel=1e-4), key
