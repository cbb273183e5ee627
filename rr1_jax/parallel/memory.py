"""Memory model: bytes per chip of a PPO run (actor + critic + frozen reference, AdamW, KV-cache rollout).

A run alternates two phases on the same chips, and its peak is the larger of the two:

* **rollout**: train state + the decode copy of the actor weights + the decode state (KV cache, logits)
  + the workspace of one prefill call;
* **update**: train state + gradients + training activations (one micro-batch through forward and backward).

The train state is exact: parameter and optimizer bytes are summed array by array from the abstract NNX
modules, each divided by the number of shards the sharding rules (`rr1_jax.parallel.mesh`) give it on the mesh,
so a dimension the mesh does not divide counts as replicated, as in the real placement. Activations and
workspaces are estimates of what the implementation materialises (no flash attention: each layer holds
`[rows, heads, T, S]` f32 attention scores), written out term by term below.

Tables and recommended setups per machine: `rr1_jax.parallel.memory_plan` (`python -m rr1_jax.parallel.memory_plan`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rr1_jax.model.config import REMAT_POLICIES, ModelConfig
from rr1_jax.model.critic import Critic
from rr1_jax.model.transformer import Transformer
from rr1_jax.parallel.chips import ChipSpec
from rr1_jax.parallel.mesh import DECODE_RULES, TRAIN_RULES, ShardingRules

ADAM_COUNT_BYTES = 4  # optax.scale_by_adam keeps one int32 step counter next to its two moment trees


@dataclasses.dataclass(frozen=True)
class MeshShape:
    """Sizes of the `(data, fsdp, tensor)` mesh axes. Has the `.shape` mapping `ShardingRules.spec` reads."""

    data: int = 1
    fsdp: int = 1
    tensor: int = 1

    @property
    def shape(self) -> dict[str, int]:
        return {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}

    @property
    def num_chips(self) -> int:
        return self.data * self.fsdp * self.tensor

    @property
    def batch_shards(self) -> int:
        """How many ways batch rows are split (the `batch` rule maps to `data` and `fsdp`)."""
        return self.data * self.fsdp

    def __str__(self) -> str:
        return f"data={self.data} fsdp={self.fsdp} tensor={self.tensor}"


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """What a PPO run holds in memory besides the model shapes. Row counts are global (whole mesh)."""

    param_dtype: str = "float32"  # master weights of actor, critic and (same dtype) reference
    compute_dtype: str = "bfloat16"  # activations
    moment_dtype: Optional[str] = None  # AdamW mu/nu; None: each parameter's own dtype (what optax does)
    critic: bool = True  # GAE with a value model; False for GRPO
    remat: str = "full"  # per-layer rematerialisation policy (ModelConfig.remat)
    micro_batch: int = 8  # rows per gradient-accumulation step (ppo.micro_batch_size)
    seq_len: int = 6144  # prompt width + response width of a training row
    response_len: int = 4096  # response width (positions that go through the LM head)
    logprob_chunk: int = 256  # sequence chunk of the LM head (ppo.logprob_chunk)
    rollout_slots: int = 64  # decode batch: one slot per episode
    cache_len: int = 9568  # KV-cache entries per slot
    cache_dtype: str = "bfloat16"
    prefill_len: int = 2048  # widest prompt bucket written by one prefill call
    decode_rules: str = "decode"  # "decode": a resharded decode copy of the actor; "train": decode reads the
    #                               training shards directly (no copy, one all-gather per layer and step)
    decode_param_dtype: Optional[str] = None  # dtype of the decode copy; None: param_dtype (reshard keeps it)

    def __post_init__(self):
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}: choose one of {REMAT_POLICIES}")
        if self.decode_rules not in ("decode", "train"):
            raise ValueError(f"decode_rules={self.decode_rules!r}: choose 'decode' or 'train'")
        if not 0 < self.response_len < self.seq_len:
            raise ValueError(f"need 0 < response_len ({self.response_len}) < seq_len ({self.seq_len})")

    def replace(self, **changes) -> "TrainingSetup":
        return dataclasses.replace(self, **changes)

    @classmethod
    def router_r1(cls, **changes) -> "TrainingSetup":
        """Upstream Router-R1 sizes (spec router-r1 §8.2): batch 64, micro-batch 8, start 2048, response 1024
        per turn, observation 600, 4 turns. Training rows are 2048 + 4096 (upstream keeps at most
        max_prompt_length = 4096 response columns); the cache holds the whole episode (`router_r1_cache_len`)."""
        base = dict(micro_batch=8, seq_len=2048 + 4096, response_len=4096, rollout_slots=64,
                    cache_len=router_r1_cache_len(), prefill_len=2048)
        base.update(changes)
        return cls(**base)


def router_r1_cache_len(start: int = 2048, turn_tokens: int = 1024, obs_tokens: int = 600, max_turns: int = 4) -> int:
    """KV entries an episode can need: the prompt, `max_turns + 1` generations and `max_turns` observations
    (the sizing of `rr1_jax.rollout.policy.engine_policy`)."""
    return start + (max_turns + 1) * turn_tokens + max_turns * obs_tokens


def dtype_bytes(dtype) -> int:
    return jnp.dtype(dtype).itemsize


# ---------------------------------------------------------------------------------------------------- sharding
def shards_of(logical_axes: Sequence[Optional[str]], shape: Sequence[int], rules: ShardingRules,
              mesh: MeshShape) -> int:
    """Number of pieces an array is cut into: the product of the mesh axes its rule-derived spec uses."""
    spec = rules.spec(logical_axes, shape, mesh)
    count = 1
    for entry in spec:
        for axis in (() if entry is None else (entry,) if isinstance(entry, str) else entry):
            count *= mesh.shape[axis]
    return count


def sharded_bytes(shape: Sequence[int], logical_axes: Sequence[Optional[str]], itemsize: int, rules: ShardingRules,
                  mesh: MeshShape) -> int:
    """Bytes of one chip's shard: ceil(elements / shards) * itemsize."""
    return math.ceil(math.prod(shape) / shards_of(logical_axes, shape, rules, mesh)) * itemsize


@functools.lru_cache(maxsize=32)
def _abstract_params(config: ModelConfig, kind: str) -> tuple:
    """(shape, logical_axes, dtype) of every parameter of the abstract actor ("actor") or critic ("critic")."""
    if kind == "actor":
        module = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    else:
        module = nnx.eval_shape(lambda: Critic(config, rngs=nnx.Rngs(0)))
    _, state = nnx.split(module, nnx.Param)
    variables = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return tuple((tuple(v.shape), tuple(v.get_metadata().get("logical_axes") or (None,) * len(v.shape)),
                  jnp.dtype(v.dtype)) for v in variables)


def param_bytes(config: ModelConfig, kind: str, mesh: MeshShape, rules: ShardingRules = TRAIN_RULES,
                dtype: Optional[str] = None) -> int:
    """Per-chip bytes of a model's parameters: Σ_params ceil(n / shards) · itemsize.

    kind: "actor" (the policy, also the reference) or "critic" (backbone without LM head + f32 value head).
    dtype: store every parameter in this dtype instead of its own (e.g. AdamW moments, a bf16 decode copy).
    """
    return sum(sharded_bytes(shape, axes, dtype_bytes(dtype or own), rules, mesh)
               for shape, axes, own in _abstract_params(config, kind))


# ---------------------------------------------------------------------------------------------------- activations
def _split(size: int, ways: int) -> int:
    """A dimension's per-chip size: divided by `ways` when divisible, else replicated (as the rules do)."""
    return size // ways if size % ways == 0 else size


def micro_rows_per_chip(setup: TrainingSetup, mesh: MeshShape) -> int:
    """Rows of one micro-batch on one chip: ceil(micro_batch / (data · fsdp))."""
    return math.ceil(setup.micro_batch / mesh.batch_shards)


def layer_activation_bytes(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> int:
    """Per row: everything one decoder layer's backward reads when nothing is recomputed (T = seq_len, c =
    compute bytes, heads/kv-heads/mlp divided over `tensor` when divisible):

        residual stream:   4·E·c·T       layer input, attention-norm output, mid residual, MLP-norm output
        q, k, v:           (H + 2·KVH)·D·c·T
        attention probs:   H·T·T·(4 + c) f32 softmax output + its compute-dtype copy (no flash attention)
        attention output:  H·D·c·T
        MLP:               3·F·c·T       gate, up, silu(gate)·up
    """
    c, t, e, d = dtype_bytes(setup.compute_dtype), setup.seq_len, config.hidden_size, config.head_dim
    h, kvh = _split(config.num_heads, mesh.tensor), _split(config.num_kv_heads, mesh.tensor)
    f = _split(config.intermediate_size, mesh.tensor)
    return (4 * e * c * t + (h + 2 * kvh) * d * c * t + h * t * t * (4 + c) + h * d * c * t + 3 * f * c * t)


def saved_layer_bytes(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> int:
    """Per row and layer: what the layer scan keeps for the backward pass under `setup.remat`.

        none:          layer_activation_bytes (everything)
        full:          E·c·T (the layer input only; the backward recomputes the layer)
        dots_no_batch: 3·E·c·T + ((H + 2·KVH)·D + 2·F)·c·T (input + outputs of the weight matmuls:
                       q/k/v, o_proj, gate/up, down)
        dots:          dots_no_batch + H·T·T·4 + H·D·c·T (also the attention einsums' outputs)
    """
    c, t, e, d = dtype_bytes(setup.compute_dtype), setup.seq_len, config.hidden_size, config.head_dim
    h, kvh = _split(config.num_heads, mesh.tensor), _split(config.num_kv_heads, mesh.tensor)
    f = _split(config.intermediate_size, mesh.tensor)
    if setup.remat == "none":
        return layer_activation_bytes(config, setup, mesh)
    if setup.remat == "full":
        return e * c * t
    matmul_outputs = 3 * e * c * t + ((h + 2 * kvh) * d + 2 * f) * c * t
    if setup.remat == "dots_no_batch":
        return matmul_outputs
    return matmul_outputs + h * t * t * 4 + h * d * c * t


def activation_bytes(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> int:
    """Per-chip peak of one micro-batch's forward + backward (actor update: it has the LM head):

        rows · [ L · saved_layer_bytes                      kept by the layer scan
               + layer_activation_bytes (if remat)          the layer being recomputed in the backward
               + H·T·T·4                                    f32 gradient of that layer's attention scores
               + R·E·c ]                                    response hidden states feeding the LM head
        + 3 · rows · chunk · V · 4                          one LM-head chunk: f32 logits, probs, their gradient
        + rows · T · T                                      the boolean attention mask
    """
    rows, c, t = micro_rows_per_chip(setup, mesh), dtype_bytes(setup.compute_dtype), setup.seq_len
    h = _split(config.num_heads, mesh.tensor)
    per_row = config.num_layers * saved_layer_bytes(config, setup, mesh)
    if setup.remat != "none":
        per_row += layer_activation_bytes(config, setup, mesh)
    per_row += h * t * t * 4 + setup.response_len * config.hidden_size * c
    vocab = _split(config.vocab_size, mesh.tensor)
    head_chunk = 3 * rows * min(setup.logprob_chunk, setup.response_len) * vocab * 4
    return rows * per_row + head_chunk + rows * t * t


# ---------------------------------------------------------------------------------------------------- rollout
def kv_cache_bytes(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> int:
    """Per-chip decode state: K and V `[L, B, S, KVH, D]` (batch over data·fsdp, KV heads over tensor when they
    divide) + the `[B, S]` validity mask + `[B, V]` f32 next-token logits."""
    b, s = setup.rollout_slots, setup.cache_len
    kv_shape = (config.num_layers, b, s, config.num_kv_heads, config.head_dim)
    kv = 2 * sharded_bytes(kv_shape, ("layers", "batch", "length", "kv_heads", "head_dim"),
                           dtype_bytes(setup.cache_dtype), DECODE_RULES, mesh)
    valid = sharded_bytes((b, s), ("batch", None), 1, DECODE_RULES, mesh)
    logits = sharded_bytes((b, config.vocab_size), ("batch", None), 4, DECODE_RULES, mesh)
    return kv + valid + logits


def prefill_workspace_bytes(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> int:
    """Per-chip transient of one prefill of all slots with a `prefill_len` prompt bucket: every new token
    attends over the whole cache, so one layer holds `[rows, H, P, S]` f32 scores + compute-dtype probs, plus
    the `[rows, P, S]` mask and `[rows, P, F]` MLP activations (×3)."""
    rows = math.ceil(setup.rollout_slots / mesh.batch_shards)
    p, s, c = setup.prefill_len, setup.cache_len, dtype_bytes(setup.compute_dtype)
    h, f = _split(config.num_heads, mesh.tensor), _split(config.intermediate_size, mesh.tensor)
    return rows * (h * p * s * (4 + c) + p * s + 3 * p * f * c)


def decode_weight_bytes(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> int:
    """The actor copy `reshard_for_decode` makes (DECODE_RULES: sharded over `tensor` only, replicated over
    data and fsdp); 0 when decoding reads the training shards (`decode_rules="train"`)."""
    if setup.decode_rules == "train":
        return 0
    return param_bytes(config.replace(param_dtype=setup.param_dtype), "actor", mesh, DECODE_RULES,
                       setup.decode_param_dtype)


# ---------------------------------------------------------------------------------------------------- estimate
@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per chip, by component."""

    actor: int
    ref: int
    critic: int
    actor_optimizer: int
    critic_optimizer: int
    gradients: int
    activations: int
    decode_weights: int
    kv_cache: int
    prefill_workspace: int

    @property
    def train_state(self) -> int:
        """Lives for the whole run: actor, reference, critic and both optimizer states."""
        return self.actor + self.ref + self.critic + self.actor_optimizer + self.critic_optimizer

    @property
    def update_peak(self) -> int:
        return self.train_state + self.gradients + self.activations

    @property
    def rollout_peak(self) -> int:
        return self.train_state + self.decode_weights + self.kv_cache + self.prefill_workspace

    @property
    def peak(self) -> int:
        return max(self.update_peak, self.rollout_peak)

    def fits(self, chip: ChipSpec, headroom: float = 0.9) -> bool:
        """Peak within `headroom` of the chip's HBM (XLA needs some room for fragmentation and programs)."""
        return self.peak <= headroom * chip.hbm_bytes


def estimate_memory(config: ModelConfig, setup: TrainingSetup, mesh: MeshShape) -> MemoryEstimate:
    """Per-chip bytes of every component for a PPO run of `config` with `setup` on `mesh`.

    Parameters / optimizer: exact per-array sums (`param_bytes`); the reference has the actor's shapes and
    dtype; AdamW holds two moment trees (`moment_dtype`, default each parameter's dtype) + an int32 counter.
    Gradients: 2 × the larger model's parameter bytes — the micro-batch accumulator and one micro-batch's
    gradient (critic and actor updates are separate programs, so only one model's gradients exist at a time).
    """
    model = config.replace(param_dtype=setup.param_dtype, dtype=setup.compute_dtype, remat=setup.remat)
    actor = param_bytes(model, "actor", mesh)
    actor_opt = 2 * param_bytes(model, "actor", mesh, dtype=setup.moment_dtype) + ADAM_COUNT_BYTES
    critic = critic_opt = 0
    if setup.critic:
        critic = param_bytes(model, "critic", mesh)
        critic_opt = 2 * param_bytes(model, "critic", mesh, dtype=setup.moment_dtype) + ADAM_COUNT_BYTES
    return MemoryEstimate(
        actor=actor, ref=actor, critic=critic, actor_optimizer=actor_opt, critic_optimizer=critic_opt,
        gradients=2 * max(actor, critic), activations=activation_bytes(model, setup, mesh),
        decode_weights=decode_weight_bytes(model, setup, mesh), kv_cache=kv_cache_bytes(model, setup, mesh),
        prefill_workspace=prefill_workspace_bytes(model, setup, mesh))
