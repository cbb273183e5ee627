"""rr1_jax.parallel.multihost in one process: P simulated processes as threads sharing a fake all-gather, the
trajectory padding, the split rollout (slot_ids) and the process-local weight copy."""
import asyncio
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rr1_jax.generate.sampling import SamplingParams
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import abstract_model
from rr1_jax.parallel.mesh import DECODE_RULES, make_mesh, param_shardings
from rr1_jax.parallel.multihost import HostLayout, local_copy, local_submesh
from rr1_jax.rl.rewards import CostNormalizer
from rr1_jax.rollout.policy import engine_policy
from rr1_jax.rollout.pool import PoolClient, PoolConfig
from rr1_jax.rollout.simulated_pool import SimulatedPoolConfig, SimulatedPoolServer, simulated_candidate_pool
from rr1_jax.rollout.trajectory import build_trajectories, pad_trajectories
from rr1_jax.rollout.worker import RolloutConfig, rollout

from tests.byte_tokenizer import byte_tokenizer


def simulate(num_processes: int, fn, **layout_args):
    """Run fn(layout) for every simulated process in its own thread; the layouts' all-gather is a barrier."""
    mesh = make_mesh(devices=jax.devices()[:1])
    barrier = threading.Barrier(num_processes)
    slots: list = [None] * num_processes
    results: list = [None] * num_processes

    def gather_for(p):
        def gather(x):
            slots[p] = np.asarray(x)
            barrier.wait()
            out = np.stack(slots)
            barrier.wait()  # everyone has read before the next call overwrites
            return out
        return gather

    def run(p):
        results[p] = fn(HostLayout(mesh, process_index=p, process_count=num_processes, gather=gather_for(p),
                                   **layout_args))

    threads = [threading.Thread(target=run, args=(p,)) for p in range(num_processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_one_process_layout_is_the_identity():
    layout = HostLayout(make_mesh(devices=jax.devices()[:1]))
    normalizer = CostNormalizer()
    assert not layout.multi and layout.is_primary
    assert layout.local_batch_size(8) == 8 and layout.slot_ids(8) is None
    assert layout.cost_rewards(normalizer, [1.0], 8) is normalizer
    assert layout.mean_metrics({"a": 0.5}, 3) == {"a": 0.5} and layout.any(True) and layout.agree_max(7) == 7
    assert layout.data_state({"process_index": 0}) == {"process_index": 0}


def test_batch_split_and_slot_positions():
    layout = HostLayout(make_mesh(devices=jax.devices()[:1]), process_index=1, process_count=2)
    assert layout.multi and not layout.is_primary
    assert layout.local_batch_size(8) == 4
    assert layout.slot_ids(4) == [1, 3, 5, 7]  # QABatchIterator's host 1 holds every 2nd row from row 1
    assert layout.data_state({"process_index": 0, "position": 12}) == {"process_index": 1, "position": 12}
    with pytest.raises(ValueError, match="multiple of the process count"):
        layout.local_batch_size(7)


def test_groups_of_episodes_keep_one_process_positions():
    """n_agent=2 on 2 processes: global episodes 0..7 are prompts 0..3 x 2 samples, contiguous per prompt as in
    one process; each process holds every 2nd prompt, and a group's id is its prompt's data position."""
    mesh = make_mesh(devices=jax.devices()[:1])
    layouts = [HostLayout(mesh, episodes_per_prompt=2, process_index=p, process_count=2) for p in range(2)]
    assert layouts[0].slot_ids(4) == [0, 1, 4, 5] and layouts[1].slot_ids(4) == [2, 3, 6, 7]
    assert layouts[0].group_ids(2).tolist() == [0, 0, 2, 2] and layouts[1].group_ids(2).tolist() == [1, 1, 3, 3]
    # one process: slot = position, groups are the prompts in order
    single = HostLayout(mesh, episodes_per_prompt=3)
    assert single.slot_ids(6) is None and single.group_ids(2).tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("per_prompt", [1, 2])
def test_costs_and_metrics_over_processes_equal_one_process(per_prompt):
    """Every simulated process's normaliser sees the whole batch in data order: the same cost rewards and the
    same window as one process scoring the batch (the last data position is a padding row), also when each
    prompt has `per_prompt` episodes (process p then holds episodes of prompts p, p + 2, ...)."""
    costs = [0.0, 4.0, 1.0, 9.0, 0.25, 16.0, 2.25]  # episode positions 0..6 (7 = padding)
    reference = CostNormalizer(window=5)
    reference.load_state_dict({**reference.state_dict(), "buffer": [3.0, 0.5]})  # a window carried over
    warm = reference.state_dict()
    expected = reference.normalize_batch(costs)

    def mine_of(p):  # episode positions of process p's slots, in slot order
        return [i for i in range(8) if (i // per_prompt) % 2 == p]

    def one(layout):
        normalizer = CostNormalizer(window=5)
        normalizer.load_state_dict(warm)
        mine = [costs[i] for i in mine_of(layout.index) if i < len(costs)]
        reward_of = layout.cost_rewards(normalizer, mine, num_slots=4)
        rewards = [reward_of(c) for c in mine]
        metrics = layout.mean_metrics({"episode/cost": float(np.mean(mine))}, len(mine))
        return rewards, normalizer.state_dict(), metrics, layout.agree_max(len(mine)), layout.any(layout.index == 1)

    for p, (rewards, state, metrics, widest, anyone) in enumerate(simulate(2, one, episodes_per_prompt=per_prompt)):
        assert rewards == pytest.approx([expected[i] for i in mine_of(p) if i < len(costs)])
        assert state == reference.state_dict()
        assert metrics["episode/cost"] == pytest.approx(np.mean(costs))
        assert widest == 4 and anyone


def test_pad_trajectories_keeps_real_tokens_and_positions():
    traj = build_trajectories([[5, 6], [7]], [[8, 9, 10], [11]], [[True, False, True], [True]],
                              [[-1.0, 0.0, -2.0], [-3.0]], prompt_width=3, response_width=4, pad_id=0, num_rows=3)
    wide = pad_trajectories(traj, 5, 6, pad_id=0)
    direct = build_trajectories([[5, 6], [7]], [[8, 9, 10], [11]], [[True, False, True], [True]],
                                [[-1.0, 0.0, -2.0], [-3.0]], prompt_width=5, response_width=6, pad_id=0, num_rows=3)
    for field in ("tokens", "attention_mask", "positions", "loss_mask", "old_logprobs", "row_valid"):
        np.testing.assert_array_equal(getattr(wide, field), getattr(direct, field), err_msg=field)
    assert wide.prompt_width == 5 and wide.response_width == 6
    assert pad_trajectories(traj, 3, 4, 0) is traj
    with pytest.raises(ValueError, match="cannot shrink"):
        pad_trajectories(traj, 2, 4, 0)


def test_split_rollout_samples_like_one_batch():
    """Two 2-slot rollouts over rows {0, 2} and {1, 3} (slot_ids) give each prompt the tokens and behaviour
    log-probs a 4-slot rollout of all four gives it: sampling keys follow the batch position."""
    tokenizer = byte_tokenizer(("<search> Qwen2.5-7B-Instruct: capital? </search>", "<answer> 42 </answer>"))
    config = ModelConfig.tiny(vocab_size=len(tokenizer))
    graphdef, shapes = nnx.split(abstract_model(config), nnx.Param)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.2, x.shape), x.dtype), shapes)
    sampling = SamplingParams(temperature=1.0)
    prompts = [tokenizer.encode(f"Question {i}: where is the capital of country {i}?") for i in range(4)]
    cfg = RolloutConfig(max_turns=1, segment_steps=4, prompt_buckets=(64,), response_buckets=(64,))
    from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task

    table = make_synthetic_task(SyntheticConfig(seed=0, num_train=4, num_test=2)).table

    def policy(slots):
        return engine_policy(graphdef, params, config, tokenizer, num_slots=slots, max_turns=1, max_turn_tokens=8,
                             prompt_buckets=[64], obs_buckets=[32], sampling=sampling)

    async def go():
        async with SimulatedPoolServer(table, config=SimulatedPoolConfig(latency_scale=0)) as url:
            async with PoolClient(simulated_candidate_pool(url), PoolConfig(require_keys=False)) as client:
                full = await rollout(policy(4), client, tokenizer, prompts, cfg, seed=11)
                half = policy(2)
                parts = [await rollout(half, client, tokenizer, prompts[p::2], cfg, seed=11, slot_ids=[p, p + 2])
                         for p in range(2)]
                return full, parts

    full, parts = asyncio.run(go())
    for p, part in enumerate(parts):
        for i, row in enumerate(range(p, 4, 2)):
            np.testing.assert_array_equal(part.trajectories.tokens[i], full.trajectories.tokens[row])
            np.testing.assert_allclose(part.trajectories.old_logprobs[i], full.trajectories.old_logprobs[row],
                                       atol=1e-5)
    assert len({tuple(np.asarray(full.trajectories.tokens[r]).tolist()) for r in range(4)}) == 4


@pytest.mark.mesh
def test_local_copy_lands_in_the_decode_layout(mesh_devices):
    """On one process the local sub-mesh is the whole mesh and the copy has the decode shardings."""
    mesh = make_mesh(data=1, fsdp=4, tensor=2, devices=mesh_devices)
    assert local_submesh(mesh).devices.shape == mesh.devices.shape
    config = ModelConfig.tiny(vocab_size=64)
    with jax.set_mesh(mesh):
        model = abstract_model(config)
    _, shapes = nnx.split(model, nnx.Param)
    host = jax.tree.map(lambda x: np.random.default_rng(0).normal(size=x.shape).astype(x.dtype), shapes)
    from rr1_jax.parallel.mesh import TRAIN_RULES

    params = jax.device_put(host, param_shardings(shapes, TRAIN_RULES, mesh))
    copy = local_copy(params, mesh, local_submesh(mesh), DECODE_RULES)
    want = param_shardings(shapes, DECODE_RULES, mesh)
    for got, ref, sharding in zip(jax.tree.leaves(copy), jax.tree.leaves(host), jax.tree.leaves(
            want, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))):
        np.testing.assert_array_equal(np.asarray(got), ref)
        assert got.sharding.is_equivalent_to(sharding, got.ndim)


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_shard_check_matches_the_iterator(processes):
    """local_batch_size(num_records=n) rejects exactly the sizes where some process's batch has no real row (the
    training iterator drops an epoch's short remainder) or where no batch is full."""
    from rr1_jax.data.batching import QABatchIterator
    from rr1_jax.data.qa import QARecord

    mesh = make_mesh(devices=jax.devices()[:1])
    for local in (1, 2, 3, 4):
        for n in range(processes, 40):
            records = [QARecord(question=f"q{i}", golden_answers=["a"], data_source="s", id=str(i)) for i in range(n)]
            layout = HostLayout(mesh, process_index=0, process_count=processes)
            if -(-n // processes) < local:
                with pytest.raises(ValueError, match="fewer than its"):
                    layout.local_batch_size(local * processes, n)
                continue
            empty = False
            for p in range(processes):
                it = QABatchIterator(records, local, seed=0, process_index=p, process_count=processes, num_epochs=1,
                                     drop_remainder=True)
                empty |= any(not batch.valid.any() for batch in it)
            if empty:
                with pytest.raises(ValueError, match="no real question"):
                    layout.local_batch_size(local * processes, n)
            else:
                assert layout.local_batch_size(local * processes, n) == local
