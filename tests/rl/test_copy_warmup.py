"""Copy warm-up: rows repeat their prompt, specials never appear, and training teaches a from-scratch policy to
repeat sequences it has never seen."""
import numpy as np
import pytest
from flax import nnx

from rr1_jax.data.synthetic_tokenizer import ROUTER_TAGS, train_word_tokenizer
from rr1_jax.model.config import ModelConfig
from rr1_jax.model.transformer import init_model
from rr1_jax.rl.copy_warmup import copy_trajectories
from rr1_jax.rl.sft import SFTConfig, sft_loss, sft_train


@pytest.fixture(scope="module")
def tokenizer():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 6)) for _ in range(200)]
    return train_word_tokenizer([" ".join(words), " ".join(ROUTER_TAGS)])


def test_rows_repeat_their_prompt_without_special_tokens(tokenizer):
    traj = copy_trajectories(tokenizer, num_rows=64, length=10, seed=1)
    prompts, responses = np.asarray(traj.tokens[:, :10]), np.asarray(traj.tokens[:, 10:])
    assert (prompts == responses).all() and traj.row_valid.all()
    banned = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    assert not banned & set(prompts.ravel().tolist())
    assert np.asarray(traj.loss_mask).tolist() == [[False] + [True] * 9] * 64  # the first copy is unpredictable
    assert len(set(map(tuple, prompts.tolist()))) == 64
    with pytest.raises(ValueError, match="length >= 2"):
        copy_trajectories(tokenizer, 4, 1)


def test_gaps_vary_the_distance_between_a_token_and_its_copy(tokenizer):
    traj = copy_trajectories(tokenizer, 200, 8, seed=2, gap=16)  # prompt width 24, response width 8
    tokens, mask = np.asarray(traj.tokens), np.asarray(traj.attention_mask)
    distances = set()
    for row, valid in zip(tokens, mask):
        prompt = row[:24][valid[:24]].tolist()
        response = row[24:][valid[24:]].tolist()
        assert 4 <= len(response) <= 8 and prompt[:len(response)] == response
        distances.add(len(prompt))  # from a prompt token to its copy
    assert len(distances) > 10


@pytest.mark.slow
def test_warm_up_teaches_copying_unseen_sequences(tokenizer):
    model = init_model(ModelConfig.tiny(vocab_size=len(tokenizer), hidden_size=96, head_dim=24,
                                        intermediate_size=192))
    held_out = copy_trajectories(tokenizer, 64, 12, seed=99)  # sequences training never shows

    def loss(module):
        graphdef, state = nnx.split(module, nnx.Param)
        return float(sft_loss(graphdef, nnx.to_pure_dict(state), held_out)[0])

    before = loss(model)
    params, losses = sft_train(model, copy_trajectories(tokenizer, 300 * 16, 12, seed=0),
                               SFTConfig(lr=3e-3, steps=300, batch_size=16, warmup_steps=30))
    after = loss(nnx.merge(nnx.graphdef(model), params))
    assert before > 0.8 * np.log(len(tokenizer))  # an untrained policy cannot copy
    assert after < 0.3, (before, after, losses[-5:])


def test_auxiliary_rows_are_consumed_in_order_and_counted(tokenizer):
    model = init_model(ModelConfig.tiny(vocab_size=len(tokenizer)))
    demos = copy_trajectories(tokenizer, 8, 6, seed=5)
    with pytest.raises(ValueError, match="needs 12 auxiliary rows"):
        sft_train(model, demos, SFTConfig(lr=1e-3, steps=3, batch_size=4),
                  auxiliary=copy_trajectories(tokenizer, 8, 6), auxiliary_batch_size=4)
    _, plain = sft_train(model, demos, SFTConfig(lr=1e-3, steps=3, batch_size=4))
    _, mixed = sft_train(model, demos, SFTConfig(lr=1e-3, steps=3, batch_size=4),
                         auxiliary=copy_trajectories(tokenizer, 12, 6), auxiliary_batch_size=4)
    assert mixed[0] == pytest.approx(plain[0])  # the reported loss is the demonstrations' (same first batch)
    assert mixed[1:] != pytest.approx(plain[1:])  # ... but the auxiliary rows changed the update
