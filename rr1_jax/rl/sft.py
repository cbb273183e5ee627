"""Supervised warm start on demonstration trajectories (the demo policy and the paper's SFT baseline).

Demonstrations (`rr1_jax.data.demonstrations`) are tokenised segment by segment with the policy tokenizer into
the same `Trajectories` layout the rollout produces: policy segments get loss_mask 1, observation segments
(`<information>…</information>`) 0. The loss is the token-mean cross-entropy over policy tokens only, computed
with the chunked LM head; AdamW with global-norm clipping. With `pack` each step's sequences are packed into
fewer rows (`rl/packing.py`): the same loss on fewer padded tokens.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rr1_jax.data.demonstrations import Demonstration
from rr1_jax.data.qa import QARecord
from rr1_jax.generate.buckets import round_up
from rr1_jax.rl.logprobs import chunked_target_logprobs, response_hidden_states, token_logprobs
from rr1_jax.rl.packing import PackedBatch, pack_steps, packed_width, unpadded_sequences
from rr1_jax.rl.train_state import freeze
from rr1_jax.rollout.trajectory import Trajectories, build_trajectories


SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    lr: float = 1e-5
    steps: int = 200  # optimizer steps
    batch_size: int = 8  # rows per step (sampled without replacement, epoch after epoch)
    # rows come in consecutive groups of this size (e.g. one question demonstrated with every candidate) and
    # batches hold whole groups, so each step's routing target is as balanced as the groups are
    group_size: int = 1
    warmup_steps: int = 0
    # "constant" after the warm-up, or "cosine" down to 0 at the last step (at a constant high lr the last few
    # batches weigh most in the final weights, e.g. in which candidates a uniform-route start prefers)
    schedule: str = "constant"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    logprob_chunk: int = 256
    seed: int = 0
    frozen: tuple[str, ...] = ()  # top-level parameter names left untouched (e.g. ("embed",))
    # pack each step's sequences into rows as wide as the padded rows (rounded up to 64): fewer rows, same loss
    pack: bool = False

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"SFT needs steps >= 1, batch_size >= 1 and lr > 0, got {self}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"SFT schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.group_size < 1 or self.batch_size % self.group_size:
            raise ValueError(f"SFT batch_size={self.batch_size} must be a multiple of group_size="
                             f"{self.group_size} (batches hold whole groups, e.g. all routes of a question)")


def demonstration_trajectories(demos: Sequence[Demonstration], tokenizer,
                               prompt_ids: Callable[[QARecord], Sequence[int]], prompt_width: int,
                               response_width: Optional[int], pad_id: int, num_rows: Optional[int] = None,
                               max_obs_length: Optional[int] = None) -> Trajectories:
    """Trajectories of demonstrations: each segment tokenised on its own (as the rollout appends observations).

    `prompt_ids(record)` renders the Router-R1 prompt (template + chat template) as token ids. Observations are
    cut to their first `max_obs_length` tokens, as the rollout cuts them, so training sees what sampling will.
    `response_width=None`: the longest response plus 8, rounded up to a multiple of 64.
    """
    prompts, responses, flags = [], [], []
    for demo in demos:
        ids, is_policy = [], []
        for segment in demo.segments:
            seg_ids = list(tokenizer.encode(segment.text, add_special_tokens=False))
            if not segment.is_policy and max_obs_length is not None:
                seg_ids = seg_ids[:max_obs_length]
            ids += seg_ids
            is_policy += [segment.is_policy] * len(seg_ids)
        prompts.append(list(prompt_ids(demo.record)))
        responses.append(ids)
        flags.append(is_policy)
    if response_width is None:
        response_width = round_up(max(map(len, responses)) + 8, 64)
    for demo, ids in zip(demos, responses):
        if len(ids) > response_width:
            raise ValueError(f"demonstration {demo.record.id!r} has {len(ids)} response tokens, more than "
                             f"response_width={response_width}; raise the width or drop long demonstrations")
    return build_trajectories(prompts, responses, flags, None, prompt_width, response_width, pad_id, num_rows)


def sft_loss(graphdef: nnx.GraphDef, params, traj: Trajectories, chunk_size: int = 256,
             policy_index: Optional[jax.Array] = None):
    """(token-mean cross-entropy over policy tokens of valid rows, number of such tokens).

    `policy_index` [N, K] (from `policy_token_index`) lists each row's policy-token response indices: the LM
    head then runs on those K positions only instead of the whole response (observations dominate it).
    """
    if policy_index is None:
        logp, _ = token_logprobs(graphdef, params, traj.tokens, traj.positions, traj.attention_mask,
                                 traj.prompt_width, chunk_size=chunk_size)  # [N, R]
        mask = traj.loss_mask
    else:
        model = nnx.merge(graphdef, params)
        hidden = response_hidden_states(model, traj.tokens, traj.positions, traj.attention_mask,
                                        traj.prompt_width)  # [N, R, E]
        index = jnp.maximum(policy_index, 0)  # [N, K]; -1 marks padding
        hidden = jnp.take_along_axis(hidden, index[..., None], axis=1)  # [N, K, E]
        targets = jnp.take_along_axis(traj.tokens[:, traj.prompt_width:], index, axis=1)  # [N, K]
        logp, _ = chunked_target_logprobs(model, hidden, targets, chunk_size=chunk_size)  # [N, K]
        mask = policy_index >= 0
    mask = (mask & traj.row_valid[:, None]).astype(jnp.float32)
    count = jnp.sum(mask)
    return -jnp.sum(logp * mask) / jnp.maximum(count, 1.0), count


def packed_sft_loss(graphdef: nnx.GraphDef, params, batch: PackedBatch, chunk_size: int = 256):
    """`sft_loss` of packed rows: (token-mean cross-entropy over the targets, number of targets)."""
    model = nnx.merge(graphdef, params)
    hidden, _ = model.hidden_states(batch.tokens, batch.positions, batch.segments > 0,
                                    segment_ids=batch.segments)  # [R, W, E]
    index = jnp.maximum(batch.predict_index, 0)  # [R, K]
    hidden = jnp.take_along_axis(hidden, index[..., None], axis=1)  # [R, K, E]
    targets = jnp.take_along_axis(batch.tokens, index + 1, axis=1)  # [R, K]
    logp, _ = chunked_target_logprobs(model, hidden, targets, chunk_size=chunk_size)  # [R, K]
    mask = (batch.predict_index >= 0).astype(jnp.float32)
    count = jnp.sum(mask)
    return -jnp.sum(logp * mask) / jnp.maximum(count, 1.0), count


def policy_token_index(loss_mask: np.ndarray, multiple: int = 16) -> np.ndarray:
    """[N, R] bool -> [N, K] int32: each row's loss-mask indices, padded with -1 (K: the most, rounded up)."""
    counts = loss_mask.sum(axis=1)
    width = max(multiple, round_up(int(counts.max(initial=0)), multiple))
    index = np.full((loss_mask.shape[0], width), -1, np.int32)
    for row, mask in enumerate(loss_mask):
        found = np.flatnonzero(mask)
        index[row, :found.size] = found
    return index


def learning_rate_schedule(cfg: SFTConfig) -> optax.Schedule:
    """lr at step k: linear warm-up over `warmup_steps`, then constant or a cosine decay to 0 at `steps`."""
    warmup = min(cfg.warmup_steps, cfg.steps)
    if cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, max(cfg.steps - warmup, 1))
    else:
        after = optax.constant_schedule(cfg.lr)
    if not warmup:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def _optimizer(cfg: SFTConfig) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg)
    return optax.chain(freeze(cfg.frozen), optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay),
                       freeze(cfg.frozen))


def batch_indices(rows: np.ndarray, cfg: SFTConfig) -> list[np.ndarray]:
    """`cfg.steps` batches [batch_size] of `rows`: epochs of shuffled groups of `cfg.group_size` consecutive rows
    (a batch may straddle two epochs, never split a group)."""
    if rows.size % cfg.group_size:
        raise ValueError(f"SFT got {rows.size} demonstration rows, not a multiple of group_size={cfg.group_size}")
    groups = rows.reshape(-1, cfg.group_size)  # [num_groups, group_size]
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    batches = []
    for _ in range(cfg.steps):
        while len(order) < cfg.batch_size:
            order += groups[rng.permutation(len(groups))].ravel().tolist()
        batches.append(np.asarray(order[:cfg.batch_size], np.int32))
        order = order[cfg.batch_size:]
    return batches


def sft_train(model: nnx.Module, traj: Trajectories, cfg: SFTConfig = SFTConfig(),
              auxiliary: Optional[Trajectories] = None, auxiliary_batch_size: int = 0):
    """Fine-tune `model`'s weights on `traj`. Returns (updated params as an nnx.State, per-step loss list).

    With `auxiliary` rows (e.g. the copy task), each step also takes the next `auxiliary_batch_size` of them
    and minimises the sum of both token-mean losses (the reported loss is the `traj` one).
    The input module is left untouched; `nnx.merge(nnx.graphdef(model), params)` gives the tuned policy.
    """
    rows = np.flatnonzero(np.asarray(traj.row_valid))
    if rows.size == 0:
        raise ValueError("SFT got no demonstration rows (all rows are padding)")
    batches = batch_indices(rows, cfg)
    mixed = auxiliary is not None and auxiliary_batch_size > 0
    if mixed and auxiliary.tokens.shape[0] < cfg.steps * auxiliary_batch_size:
        raise ValueError(f"SFT needs {cfg.steps * auxiliary_batch_size} auxiliary rows, got "
                         f"{auxiliary.tokens.shape[0]}")
    auxiliary_batches = [np.arange(k * auxiliary_batch_size, (k + 1) * auxiliary_batch_size)
                         for k in range(cfg.steps)] if mixed else None
    graphdef, state = nnx.split(model, nnx.Param)
    params = jax.tree.map(jnp.copy, nnx.to_pure_dict(state))
    tx = _optimizer(cfg)
    opt_state = tx.init(params)
    inputs = _packed_inputs if cfg.pack else _padded_inputs
    step_inputs, main_loss, extra_loss = inputs(traj, batches, auxiliary, auxiliary_batches, cfg)

    def total_loss(p, main, extra):
        loss = main_loss(graphdef, p, main)
        return (loss if extra is None else loss + extra_loss(graphdef, p, extra)), loss

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, main, extra):
        (_, loss), grads = jax.value_and_grad(total_loss, has_aux=True)(params, main, extra)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for main, extra in step_inputs:
        params, opt_state, loss = step(params, opt_state, main, extra)
        losses.append(loss)
    nnx.replace_by_pure_dict(state, params)
    return state, [float(x) for x in jax.device_get(losses)]


def _padded_inputs(traj, batches, auxiliary, auxiliary_batches, cfg: SFTConfig):
    """(per-step row indices, main loss, auxiliary loss): the whole padded sets stay on device, closed over by
    the losses, and a step passes only its rows."""
    policy_index = jnp.asarray(policy_token_index(np.asarray(traj.loss_mask)))  # [N, K]
    traj = jax.tree.map(jnp.asarray, traj)
    auxiliary = None if auxiliary_batches is None else jax.tree.map(jnp.asarray, auxiliary)

    def main_loss(graphdef, params, rows):
        return sft_loss(graphdef, params, jax.tree.map(lambda x: x[rows], traj), cfg.logprob_chunk,
                        policy_index[rows])[0]

    def extra_loss(graphdef, params, rows):
        return sft_loss(graphdef, params, jax.tree.map(lambda x: x[rows], auxiliary), cfg.logprob_chunk)[0]

    extra = auxiliary_batches or [None] * len(batches)
    return zip(batches, extra), main_loss, extra_loss


def _packed_inputs(traj, batches, auxiliary, auxiliary_batches, cfg: SFTConfig):
    """(per-step packed rows, main loss, auxiliary loss): each step's sequences packed on the host up front into
    rows as wide as the padded ones, rounded up to 64 (pad id 0: padding is masked)."""
    def packed(source, steps):
        return pack_steps(unpadded_sequences(source), steps, packed_width(source), pad_id=0)

    main = packed(traj, batches)
    extra = packed(auxiliary, auxiliary_batches) if auxiliary_batches is not None else [None] * len(main)

    def loss(graphdef, params, batch):
        return packed_sft_loss(graphdef, params, batch, cfg.logprob_chunk)[0]

    return zip(main, extra), loss, loss
