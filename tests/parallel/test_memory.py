"""The memory model against hand computation and against the bytes of real (tiny) arrays."""
import math

import jax
import numpy as np
import pytest

from rr1_jax.model.config import ModelConfig
from rr1_jax.model.critic import critic_from_policy
from rr1_jax.model.transformer import init_model
from rr1_jax.parallel import memory
from rr1_jax.parallel.memory import MeshShape, TrainingSetup, estimate_memory, param_bytes, shards_of
from rr1_jax.parallel.mesh import TRAIN_RULES, make_mesh, shard_params
from rr1_jax.rl.ppo_config import OptimConfig, PPOConfig
from rr1_jax.rl.trainer import PPOTrainer
from flax import nnx


def _nbytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_train_state_bytes_equal_the_real_train_state(param_dtype):
    config = ModelConfig.tiny(param_dtype=param_dtype)
    actor = init_model(config, 0)
    trainer = PPOTrainer(actor, critic_from_policy(actor, head_std=0.02), PPOConfig(mini_batch_size=2,
                         micro_batch_size=1), OptimConfig(lr=1e-6), OptimConfig(lr=1e-5))
    state = trainer.init_state(copy=False)
    est = estimate_memory(config, TrainingSetup(param_dtype=param_dtype), MeshShape())
    assert est.actor == _nbytes(state.actor) == est.ref == _nbytes(state.ref)
    assert est.critic == _nbytes(state.critic)
    assert est.actor_optimizer == _nbytes(state.actor_opt)  # moments follow the parameter dtype (optax)
    assert est.critic_optimizer == _nbytes(state.critic_opt)  # the value head stays f32 even with bf16 params
    real = _nbytes((state.actor, state.ref, state.critic, state.actor_opt, state.critic_opt))
    assert est.train_state == real


def test_param_bytes_of_the_3b_configs_by_hand():
    llama = ModelConfig.llama3_2_3b()
    assert param_bytes(llama, "actor", MeshShape()) == llama.num_params * 4  # tied head: embedding counted once
    assert param_bytes(llama, "critic", MeshShape()) == llama.num_params * 4 + (3072 + 1) * 4  # + value head/bias
    assert param_bytes(llama.replace(param_dtype="bfloat16"), "actor", MeshShape()) == llama.num_params * 2
    # Qwen2.5-3B on tensor=4: its 2 KV heads (k/v weights and biases) and the norms stay replicated.
    qwen = ModelConfig.qwen2_5_3b()
    layers, e, kvh, d = 36, 2048, 2, 128
    kv = layers * (2 * e * kvh * d + 2 * kvh * d)
    norms = layers * 2 * e + e
    split = qwen.num_params - kv - norms
    assert param_bytes(qwen, "actor", MeshShape(tensor=4)) == 4 * (split // 4 + kv + norms)
    biases = layers * (16 + 2 + 2) * d  # q/k/v biases have no `embed` axis: replicated over fsdp
    fsdp_split = qwen.num_params - norms - biases
    assert param_bytes(qwen, "actor", MeshShape(fsdp=8)) == 4 * (math.ceil(fsdp_split / 8) + norms + biases)


def test_shards_follow_the_sharding_rules():
    mesh = MeshShape(fsdp=2, tensor=4)
    assert shards_of(("layers", "embed", "heads", "head_dim"), (2, 64, 4, 16), TRAIN_RULES, mesh) == 8
    assert shards_of(("layers", "embed", "kv_heads", "head_dim"), (2, 64, 2, 16), TRAIN_RULES, mesh) == 2
    assert shards_of(("layers", "norm"), (2, 64), TRAIN_RULES, mesh) == 1


def test_kv_cache_by_hand():
    setup = TrainingSetup.router_r1()
    assert setup.cache_len == memory.router_r1_cache_len() == 2048 + 5 * 1024 + 4 * 600
    mesh = MeshShape(fsdp=8)
    kv = 2 * 28 * 64 * 9568 * 8 * 128 * 2 // 8
    assert memory.kv_cache_bytes(ModelConfig.llama3_2_3b(), setup, mesh) == kv + 64 * 9568 // 8 + 64 * 128256 * 4 // 8
    # Qwen2.5-3B's 2 KV heads cannot split over tensor=4: only the batch axis divides the cache
    qwen_kv = 2 * 36 * 64 * 9568 * 2 * 128 * 2 // 2
    assert memory.kv_cache_bytes(ModelConfig.qwen2_5_3b(), setup, MeshShape(data=2, tensor=4)) == (
        qwen_kv + 64 * 9568 // 2 + 64 * 151936 * 4 // 2)


def test_activation_formulas_by_hand():
    config = ModelConfig.tiny()  # E 64, H 4, KVH 2, D 16, F 128, L 2, V 512
    setup = TrainingSetup(seq_len=32, response_len=24, micro_batch=4, logprob_chunk=8, remat="none")
    mesh = MeshShape(fsdp=2)
    layer = 4 * 64 * 2 * 32 + (4 + 4) * 16 * 2 * 32 + 4 * 32 * 32 * 6 + 4 * 16 * 2 * 32 + 3 * 128 * 2 * 32
    assert memory.layer_activation_bytes(config, setup, mesh) == layer == 77824
    rows, head = 2, 3 * 2 * 8 * 512 * 4
    per_row_fixed = 4 * 32 * 32 * 4 + 24 * 64 * 2
    assert memory.activation_bytes(config, setup, mesh) == rows * (2 * layer + per_row_fixed) + head + rows * 32 * 32
    full = setup.replace(remat="full")
    assert memory.saved_layer_bytes(config, full, mesh) == 64 * 2 * 32
    assert memory.activation_bytes(config, full, mesh) == rows * (2 * 64 * 2 * 32 + layer + per_row_fixed) + head + \
        rows * 32 * 32
    saved = [memory.saved_layer_bytes(config, setup.replace(remat=r), mesh) for r in ("full", "dots_no_batch", "dots")]
    assert saved == sorted(saved) and saved[-1] < layer
    assert memory.micro_rows_per_chip(setup, MeshShape(fsdp=8)) == 1  # a chip never holds less than one row


def test_phase_peaks_and_decode_copy():
    config = ModelConfig.llama3_2_3b()
    est = estimate_memory(config, TrainingSetup.router_r1(), MeshShape(fsdp=4))
    assert est.update_peak == est.train_state + est.gradients + est.activations
    assert est.rollout_peak == est.train_state + est.decode_weights + est.kv_cache + est.prefill_workspace
    assert est.gradients == 2 * max(est.actor, est.critic)
    assert est.decode_weights == config.num_params * 4  # decode rules replicate the weights over fsdp
    no_copy = estimate_memory(config, TrainingSetup.router_r1(decode_rules="train"), MeshShape(fsdp=4))
    assert no_copy.decode_weights == 0
    bf16_copy = estimate_memory(config, TrainingSetup.router_r1(decode_param_dtype="bfloat16"), MeshShape(fsdp=4))
    assert bf16_copy.decode_weights == config.num_params * 2


@pytest.mark.mesh
def test_param_bytes_equal_one_devices_real_shards(mesh_devices):
    config = ModelConfig.tiny(qkv_bias=True, num_kv_heads=1)  # 1 KV head: replicated over tensor
    mesh = make_mesh(1, 2, 4, mesh_devices)
    _, params = nnx.split(init_model(config, 0), nnx.Param)
    sharded = shard_params(params, TRAIN_RULES, mesh)
    on_device0 = sum(next(s.data.nbytes for s in x.addressable_shards if s.device == mesh_devices[0])
                     for x in jax.tree.leaves(sharded))
    assert on_device0 == param_bytes(config, "actor", MeshShape(fsdp=2, tensor=4))
    assert on_device0 > np.sum([x.nbytes for x in jax.tree.leaves(sharded)]) / 8



@pytest.mark.parametrize("remat", ["none", "full", "dots_no_batch"])
def test_activation_estimate_is_near_xlas_own_buffer_plan(remat):
    """XLA's temporary bytes for the gradient of a chunked log-prob loss (one micro-batch, CPU) vs the estimate.
    XLA's figure also holds the parameter gradients, so the estimate may sit a little below it."""
    from rr1_jax.rl.logprobs import token_logprobs

    config = ModelConfig.tiny(num_layers=4, hidden_size=128, intermediate_size=512, vocab_size=1024, remat=remat)
    rows, t, prompt = 2, 256, 64
    graphdef, state = nnx.split(init_model(config, 0), nnx.Param)
    tokens = jax.numpy.ones((rows, t), jax.numpy.int32)
    positions = jax.numpy.broadcast_to(jax.numpy.arange(t), (rows, t))
    mask = jax.numpy.ones((rows, t), bool)

    def loss(params):
        return token_logprobs(graphdef, params, tokens, positions, mask, prompt, chunk_size=64)[0].sum()

    temp = jax.jit(jax.grad(loss)).lower(state).compile().memory_analysis().temp_size_in_bytes
    setup = TrainingSetup(compute_dtype="float32", remat=remat, micro_batch=rows, seq_len=t, response_len=t - prompt,
                          logprob_chunk=64)
    estimate = memory.activation_bytes(config, setup, MeshShape())
    assert 0.5 * temp < estimate < 1.5 * temp, (estimate, temp)
