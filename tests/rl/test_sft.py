"""SFT on demonstrations: masks from segments, the loss ignores observation targets, and training lowers it."""
import zlib

import jax
import numpy as np
import pytest
from flax import nnx

from rr1_jax.data.demonstrations import Demonstration, Segment, make_demonstrations
from rr1_jax.data.qa import QARecord
from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
from rr1_jax.data.synthetic_candidates import default_candidates
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import init_model
from rr1_jax.rl.sft import (SFTConfig, batch_indices, demonstration_trajectories, learning_rate_schedule,
                            policy_token_index, sft_loss, sft_train)

VOCAB = ModelConfig.tiny().vocab_size


class WordTokenizer:
    """Test tokenizer: every word and every whitespace run is one token, id = crc32 % (V-1) + 1 (0 is pad)."""

    def encode(self, text, add_special_tokens=False):
        import re
        return [zlib.crc32(piece.encode()) % (VOCAB - 1) + 1 for piece in re.findall(r"\S+|\s+", text)]


def _prompt(record):
    return WordTokenizer().encode(record.question)


def test_segments_become_policy_and_observation_masks():
    task = make_synthetic_task(SyntheticConfig(num_train=12, num_test=2))
    demos = make_demonstrations(task.train[:6], task.table, default_candidates())
    traj = demonstration_trajectories(demos, WordTokenizer(), _prompt, 24, 256, pad_id=0, num_rows=8)
    tok = WordTokenizer()
    for i, demo in enumerate(demos):
        want_ids, want_flags = [], []
        for segment in demo.segments:
            ids = tok.encode(segment.text)
            want_ids += ids
            want_flags += [segment.is_policy] * len(ids)
        n = len(want_ids)
        assert traj.tokens[i, 24:24 + n].tolist() == want_ids
        assert traj.loss_mask[i, :n].tolist() == want_flags and not traj.loss_mask[i, n:].any()
        assert not all(want_flags) and any(want_flags)  # each demo has routed observations and policy text
    assert traj.row_valid.tolist() == [True] * 6 + [False] * 2


def test_observations_are_cut_like_the_rollout_cuts_them():
    task = make_synthetic_task(SyntheticConfig(num_train=12, num_test=2))
    demos = make_demonstrations(task.train[:6], task.table, default_candidates(), style="terse")
    tok = WordTokenizer()
    traj = demonstration_trajectories(demos, tok, _prompt, 24, 256, pad_id=0, max_obs_length=3)
    for i, demo in enumerate(demos):
        want_ids, want_flags = [], []
        for segment in demo.segments:
            ids = tok.encode(segment.text)[:None if segment.is_policy else 3]  # head kept, as worker.py does
            want_ids += ids
            want_flags += [segment.is_policy] * len(ids)
        n = len(want_ids)
        assert traj.tokens[i, 24:24 + n].tolist() == want_ids and not traj.attention_mask[i, 24 + n:].any()
        assert traj.loss_mask[i, :n].tolist() == want_flags


def _short_demos(n=8):
    """Short hand-made demonstrations (response <= 28 word tokens) ending in an observation on odd rows."""
    demos = []
    for i in range(n):
        record = QARecord(id=str(i), question=f"capital of land{i % 3} ?", golden_answers=[f"city{i % 3}"],
                          data_source="synthetic_capital")
        segments = [Segment(f"<think>ask alpha</think> <search> Alpha: capital of land{i % 3} </search>", True),
                    Segment(f" <information>city{i % 3}</information> ", False),
                    Segment(f"<answer> city{i % 3} </answer>", True)]
        if i % 2:
            segments.append(Segment(" <information>late observation</information>", False))
        demos.append(Demonstration(record, tuple(segments), ("Alpha",), f"city{i % 3}", True, 0.0))
    return demos


@pytest.mark.slow
def test_sft_loss_ignores_observation_targets_and_training_lowers_it():
    demos = _short_demos()
    traj = demonstration_trajectories(demos, WordTokenizer(), _prompt, 12, 32, pad_id=0)
    model = init_model(ModelConfig.tiny(), seed=0)
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    loss_fn = jax.jit(lambda p, t: sft_loss(graphdef, p, t, chunk_size=8))
    base, count = loss_fn(params, traj)
    assert int(count) == int(np.asarray(traj.loss_mask).sum())
    # The LM head on the policy tokens only (what sft_train runs) gives the same loss and count.
    index = policy_token_index(np.asarray(traj.loss_mask), multiple=4)
    assert index.shape[1] % 4 == 0 and (index >= 0).sum() == int(count)
    gathered, gathered_count = jax.jit(lambda p, t, i: sft_loss(graphdef, p, t, 8, i))(params, traj, index)
    assert float(gathered) == pytest.approx(float(base), rel=1e-6) and int(gathered_count) == int(count)

    # odd rows end with an observation: changing those ids changes only observation targets (nothing after them)
    tokens = np.array(traj.tokens)
    response_mask, loss_mask = np.asarray(traj.response_mask), np.asarray(traj.loss_mask)
    last = response_mask.sum(-1)
    for i in range(1, 8, 2):
        tail = slice(12 + int(np.flatnonzero(loss_mask[i]).max()) + 1, 12 + int(last[i]))
        tokens[i, tail] = (tokens[i, tail] + 7) % (VOCAB - 1) + 1
    perturbed, _ = loss_fn(params, traj.replace(tokens=tokens))
    assert float(perturbed) == float(base)
    # ...while perturbing one policy token does change it (the test can fail)
    tokens = np.array(traj.tokens)
    tokens[0, 12 + 2] = (tokens[0, 12 + 2] + 7) % (VOCAB - 1) + 1
    assert abs(float(loss_fn(params, traj.replace(tokens=tokens))[0]) - float(base)) > 1e-4

    tuned, losses = sft_train(model, traj, SFTConfig(lr=3e-3, steps=25, batch_size=4, logprob_chunk=8))
    assert len(losses) == 25 and np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    after, _ = loss_fn(nnx.to_pure_dict(tuned), traj)
    assert float(after) < 0.6 * float(base)
    assert float(loss_fn(params, traj)[0]) == float(base)  # the input module was not modified


def test_lr_schedules_warm_up_then_hold_or_decay_to_zero():
    steps, warmup, lr = 10, 4, 2.0
    constant = learning_rate_schedule(SFTConfig(lr=lr, steps=steps, warmup_steps=warmup))
    cosine = learning_rate_schedule(SFTConfig(lr=lr, steps=steps, warmup_steps=warmup, schedule="cosine"))
    ramp = [lr * k / warmup for k in range(warmup)]
    decay = [lr * 0.5 * (1 + np.cos(np.pi * k / (steps - warmup))) for k in range(steps - warmup)]
    assert [float(constant(k)) for k in range(steps)] == pytest.approx(ramp + [lr] * (steps - warmup))
    assert [float(cosine(k)) for k in range(steps)] == pytest.approx(ramp + decay)
    assert float(cosine(steps)) == pytest.approx(0.0)
    no_warmup = learning_rate_schedule(SFTConfig(lr=lr, steps=steps, schedule="cosine"))
    assert [float(no_warmup(k)) for k in (0, 5)] == pytest.approx([lr, lr * 0.5])
    with pytest.raises(ValueError, match="SFT schedule must be one of"):
        SFTConfig(schedule="linear")


def test_batches_hold_whole_groups_and_single_rows_shuffle_as_a_plain_permutation():
    rows = np.arange(3, 39)  # 36 valid rows = 6 questions x 6 routes, consecutive per question
    cfg = SFTConfig(steps=7, batch_size=12, group_size=6, seed=5)
    batches = batch_indices(rows, cfg)
    assert len(batches) == 7 and all(b.shape == (12,) for b in batches)
    for b in batches:  # each batch: two whole questions, every route once
        groups = (b - 3).reshape(-1, 6) // 6
        assert (groups == groups[:, :1]).all() and sorted(((b - 3) % 6).tolist()) == sorted(list(range(6)) * 2)
    first_epoch = np.concatenate(batches[:3])
    assert sorted(first_epoch.tolist()) == rows.tolist()  # an epoch sees every row once
    assert not np.array_equal(first_epoch, rows)  # in shuffled group order
    plain = batch_indices(rows, SFTConfig(steps=3, batch_size=12, seed=5))
    assert np.array_equal(np.concatenate(plain), np.random.default_rng(5).permutation(rows))
    with pytest.raises(ValueError, match="batch_size=16 must be a multiple of group_size=6"):
        SFTConfig(batch_size=16, group_size=6)
    with pytest.raises(ValueError, match="35 demonstration rows, not a multiple of group_size=6"):
        batch_indices(rows[:35], cfg)


def test_balanced_batches_config_groups_all_routes_of_a_question():
    from configs import demo
    from rr1_jax.rl.run_setup import load_run_data, sft_warm_start

    c = demo.get_config()
    c.data.synthetic.update(dict(num_train=24, num_test=8))
    c.sft.update(dict(routes_per_question=6, balanced_batches=True, batch_size=16))
    with pytest.raises(ValueError, match="batch_size=16 must be a multiple of group_size=6"):
        sft_warm_start(None, None, load_run_data(c), "", c)  # checked before any model work
