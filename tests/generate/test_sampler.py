"""KV-cache engine vs teacher-forced full forwards, append vs fresh prefill, stops, and no recompilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr1_jax.generate import (Sampler, SamplingParams, StopMatcher, StopReason, behaviour_log_probs,
                              count_compilations, generate, pad_batch, pad_to_bucket)
from rr1_jax.model.transformer import forward, positions_from_mask

PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18]]  # left-padded to 8: different lengths
SAMPLED = SamplingParams(temperature=0.8, top_k=40, top_p=0.9)
# tests share shapes (3 slots, bucket 8, 4-step segments) so jitted functions compile once per module run


def teacher_forced_log_probs(graphdef, params, rows, generated, sampling):
    """Log-probs of `generated[b]` given `rows[b]` from one full forward (no cache), left-padded."""
    full = [list(r) + list(g) for r, g in zip(rows, generated)]
    tokens, lengths = pad_batch(full, max(map(len, full)), 0, align="left")
    mask = np.arange(tokens.shape[1])[None] >= (tokens.shape[1] - lengths)[:, None]
    logits = forward(graphdef, params, jnp.asarray(tokens), positions_from_mask(jnp.asarray(mask)), jnp.asarray(mask))
    log_probs = np.asarray(behaviour_log_probs(logits, sampling))  # [B, T, V]
    out = []
    for b, gen in enumerate(generated):
        t = tokens.shape[1]
        cols = np.arange(t - len(gen) - 1, t - 1)  # the column predicting each generated token
        out.append(log_probs[b, cols, gen])
    return out


@pytest.mark.parametrize("sampling", [SamplingParams(greedy=True), SAMPLED], ids=["greedy", "sampled"])
def test_cache_decode_matches_teacher_forced_forward(tiny_model, sampling):
    config, graphdef, params = tiny_model
    results = generate(graphdef, params, PROMPTS, 4, sampling=sampling, seed=3, prompt_buckets=[8])
    generated = [ids for ids, _, _ in results]
    assert all(len(g) == 4 and reason == "BUDGET" for g, (_, _, reason) in zip(generated, results))
    reference = teacher_forced_log_probs(graphdef, params, PROMPTS, generated, sampling)
    for (ids, logprobs, _), ref in zip(results, reference):
        np.testing.assert_allclose(logprobs, ref, atol=1e-4)
    if sampling.greedy:  # greedy picks the teacher-forced argmax and is reproducible
        assert generate(graphdef, params, PROMPTS, 4, sampling=sampling, seed=99, prompt_buckets=[8]) \
            [0][0] == generated[0]
    else:
        assert all(np.all(np.isfinite(ref)) for ref in reference)  # sampled tokens lie in the allowed set


def test_sampling_is_deterministic_per_seed(tiny_model):
    _, graphdef, params = tiny_model
    def sample(seed):
        return [r[0] for r in generate(graphdef, params, PROMPTS, 4, sampling=SAMPLED, seed=seed, prompt_buckets=[8])]
    first, again, other = sample(7), sample(7), sample(8)
    assert first == again and first != other


def run_two_turns(sampler, params, config, prompts, observations, chosen, first_steps=4, second_steps=4):
    """prefill -> decode -> append(observations for `chosen` slots) -> decode; returns both segments' outputs."""
    state = sampler.init_state(config, len(prompts), 40, seed=1, turn_budget=first_steps)
    tokens, lengths = pad_to_bucket(prompts, [8, 16], 0, align="left")
    state = sampler.prefill(params, state, tokens, lengths)
    state, first = sampler.decode_segment(params, state, first_steps)
    obs_tokens, obs_lengths = pad_to_bucket(observations, [4, 8], 0, align="right")
    before = jax.tree.map(np.asarray, state)
    state = sampler.append(params, state, obs_tokens, obs_lengths, chosen)
    state = state._replace(turn_budget=jnp.full_like(state.turn_budget, second_steps))
    state, second = sampler.decode_segment(params, state, second_steps)
    return jax.tree.map(np.asarray, (first, second, before, state))


def test_append_then_decode_equals_fresh_prefill(tiny_model):
    config, graphdef, params = tiny_model
    sampler = Sampler(graphdef, SamplingParams(greedy=True))
    observations = [[30, 31, 32], [], [40, 41, 42, 43, 44, 45]]  # slot 1 is not chosen
    chosen = np.array([True, False, True])
    first, second, before, after = run_two_turns(sampler, params, config, PROMPTS, observations, chosen)
    assert first.num_tokens.tolist() == [4, 4, 4] and second.num_tokens.tolist() == [4, 0, 4]
    # the unchosen slot is untouched: same cache entries (pads beyond `end` are scratch), still stopped
    end = before.cache.end[1]
    np.testing.assert_array_equal(after.cache.k[:, 1, :end], before.cache.k[:, 1, :end])
    np.testing.assert_array_equal(after.cache.valid[1], before.cache.valid[1])
    assert after.cache.end[1] == end and not after.active[1]
    # chosen slots: the continuation equals a fresh prefill of prompt + first turn + observation
    contexts = [PROMPTS[b] + first.tokens[b, :4].tolist() + observations[b] for b in (0, 2)]
    fresh = generate(graphdef, params, contexts, 4)
    for (ids, logprobs, _), b in zip(fresh, (0, 2)):
        assert second.tokens[b].tolist() == ids
        np.testing.assert_allclose(second.logprobs[b], logprobs, atol=1e-4)


def test_second_multi_turn_run_compiles_nothing(tiny_model):
    config, graphdef, params = tiny_model
    sampler = Sampler(graphdef, SAMPLED)
    chosen = np.array([True, True, False])
    run_two_turns(sampler, params, config, PROMPTS, [[30, 31], [32], []], chosen)  # warm-up
    with count_compilations() as compiles:
        run_two_turns(sampler, params, config, [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]],
                      [[33, 34, 35], [36, 37, 38, 39], []], chosen)
    assert compiles.count == 0


# ---- stops, end to end: a crafted model whose greedy next token is a fixed function of the current one ----
TOKEN_TEXT = {1: b"", 10: b"Hello", 11: b" world", 12: b"</", 13: b"search", 14: b">\n", 15: b"text</se",
              16: b"arch", 17: b">", 18: b" more", 20: b"<answer>", 21: b"yes", 22: b"</answer>", 30: b"a",
              31: b"b", 32: b"c", 33: b"d", 40: b"bye", 41: b"!", 50: b"ok"}
SUCCESSOR = {10: 11, 11: 12, 12: 13, 13: 14, 14: 18, 18: 18,  # "Hello world</search>\n more more..."
             20: 21, 21: 15, 15: 16, 16: 17, 17: 18,  # "<answer>yes" "text</se" "arch" ">": spans 3 tokens
             30: 31, 31: 32, 32: 33, 33: 30,  # never stops: budget
             40: 41, 41: 1,  # EOS
             50: 22}  # "</answer>" in one token


def scripted_params(config, params):
    """Zero every layer's residual writes and map token t's embedding onto a head column favouring SUCCESSOR[t]."""
    nodes = sorted(SUCCESSOR)
    embed = np.zeros((config.vocab_size, config.hidden_size), np.float32)
    head = np.zeros((config.hidden_size, config.vocab_size), np.float32)
    for row, token in enumerate(nodes):
        embed[token, row] = 1.0
        head[row, SUCCESSOR[token]] = 10.0
    new = jax.tree.map(lambda x: x, params)
    new["embed"][...] = jnp.asarray(embed)
    new["lm_head"][...] = jnp.asarray(head)
    new["layers"]["o_proj"][...] = jnp.zeros_like(new["layers"]["o_proj"][...])
    new["layers"]["down_proj"][...] = jnp.zeros_like(new["layers"]["down_proj"][...])
    return new


def test_stop_strings_eos_and_budget_end_to_end(tiny_model):
    config, graphdef, params = tiny_model
    params = scripted_params(config, params)
    token_bytes = [TOKEN_TEXT.get(i, b"?") for i in range(config.vocab_size)]
    stop = StopMatcher.build(["</search>", "</answer>"], token_bytes)
    prompts = [[3, 10], [4, 4, 4, 20], [30], [5, 40], [50]]
    results = generate(graphdef, params, prompts, 7, stop=stop, eos_ids=[1])
    assert results[0][0] == [11, 12, 13, 14] and results[0][2] == "STOP_STRING"  # stops on ">\n"
    assert results[1][0] == [21, 15, 16, 17] and results[1][2] == "STOP_STRING"  # "text</se" + "arch" + ">"
    assert results[2][0] == [31, 32, 33, 30, 31, 32, 33] and results[2][2] == "BUDGET"  # others continue
    assert results[3][0] == [41, 1] and results[3][2] == "EOS"
    assert results[4][0] == [22] and results[4][2] == "STOP_STRING"


def test_stop_string_index_and_cache_full(tiny_model):
    config, graphdef, params = tiny_model
    params = scripted_params(config, params)
    token_bytes = [TOKEN_TEXT.get(i, b"?") for i in range(60)]  # a tokenizer smaller than the model vocab
    sampler = Sampler(graphdef, stop=StopMatcher.build(["</search>", "</answer>"], token_bytes), eos_ids=[1])
    state = sampler.init_state(config, 3, 6, turn_budget=100)  # room for 6 - 2 = 4 new tokens
    tokens, lengths = pad_batch([[3, 10], [0, 50], [0, 30]], 2, 0)
    state = sampler.prefill(params, state, tokens, lengths)
    state, out = sampler.decode_segment(params, state, 3)  # segment limit before the cache is full
    assert out.num_tokens.tolist() == [3, 1, 3]
    assert [StopReason(int(r)) for r in out.stop_reason] == [StopReason.NONE, StopReason.STOP_STRING,
                                                              StopReason.NONE]
    assert out.stop_string.tolist() == [-1, 1, -1]  # "</answer>"
    state, out = sampler.decode_segment(params, state, 3)  # the matcher keeps its state across segments
    assert out.tokens[0, :1].tolist() == [14] and StopReason(int(out.stop_reason[0])) == StopReason.STOP_STRING
    assert out.num_tokens[2] == 1 and StopReason(int(out.stop_reason[2])) == StopReason.CACHE_FULL


def test_append_refuses_a_bucket_that_overflows_the_cache(tiny_model):
    config, graphdef, params = tiny_model
    sampler = Sampler(graphdef)
    state = sampler.init_state(config, 2, 10)
    tokens, lengths = pad_batch([[1, 2, 3], [4]], 8, 0)
    state = sampler.prefill(params, state, tokens, lengths)
    with pytest.raises(ValueError, match=r"cache full: slots \[1\]"):
        sampler.append(params, state, np.zeros((2, 4), np.int32), np.array([0, 2]), np.array([False, True]))


def test_right_aligned_prefill_equals_left_aligned(tiny_model):
    config, graphdef, params = tiny_model
    sampler = Sampler(graphdef)
    state = sampler.init_state(config, len(PROMPTS), 12, turn_budget=4)
    tokens, lengths = pad_batch(PROMPTS, 8, 0, align="right")
    state = sampler.prefill(params, state, tokens, lengths, align="right")
    state, out = sampler.decode_segment(params, state, 4)
    for b, (ids, logprobs, _) in enumerate(generate(graphdef, params, PROMPTS, 4, prompt_buckets=[8])):
        assert np.asarray(out.tokens[b]).tolist() == ids
        np.testing.assert_allclose(np.asarray(out.logprobs[b]), logprobs, atol=1e-4)


class FullBatchSampler(Sampler):
    """The pre-gather append: every slot runs through the model (the reference for the K-row path)."""

    def append_rows(self, num_chosen, num_slots):
        return None


def test_append_runs_only_a_bucket_of_chosen_rows(tiny_model):
    config, graphdef, params = tiny_model
    prompts = [[5 + b, 6, 7 + b][:1 + b % 3] + [9] * (b % 4) for b in range(8)]
    samplers = Sampler(graphdef), FullBatchSampler(graphdef)
    assert [samplers[0].append_rows(n, 8) for n in (0, 1, 2, 3, 5, 8)] == [1, 1, 2, 4, None, None]
    state = samplers[0].init_state(config, 8, 32, seed=2, turn_budget=4)
    state = samplers[0].prefill(params, state, *pad_batch(prompts, 8, 0, align="left"))
    state, _ = samplers[0].decode_segment(params, state, 4)
    before = jax.tree.map(np.asarray, state)

    def append_then_decode(sampler, chosen, observations):
        obs, lengths = pad_batch([observations.get(b, []) for b in range(8)], 4, 0, align="right")
        mask = np.isin(np.arange(8), chosen)
        appended = sampler.append(params, jax.tree.map(jnp.array, before), obs, lengths, mask)
        appended_host = jax.tree.map(np.asarray, appended)
        return appended_host, jax.tree.map(np.asarray, sampler.decode_segment(params, appended, 4)[1])

    for chosen, observations in (([5], {5: [30, 31]}), ([0, 3, 6], {0: [32], 3: [], 6: [33, 34, 35, 36]})):
        (got, got_out), (ref, ref_out) = (append_then_decode(s, chosen, observations) for s in samplers)
        others = np.setdiff1d(np.arange(8), chosen)
        for new, old in zip(jax.tree.leaves(got), jax.tree.leaves(before)):  # unchosen slots: bit-identical
            slot_axis = 1 if new.ndim == 5 else 0
            np.testing.assert_array_equal(np.take(new, others, slot_axis), np.take(old, others, slot_axis))
        for name in ("next_position", "active", "turn_tokens", "stop_reason", "keys"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
        np.testing.assert_array_equal(got.cache.end, ref.cache.end)
        np.testing.assert_array_equal(got.cache.valid, ref.cache.valid)
        np.testing.assert_allclose(got.logits, ref.logits, atol=1e-4)
        np.testing.assert_array_equal(got_out.tokens, ref_out.tokens)
        np.testing.assert_array_equal(got_out.num_tokens, ref_out.num_tokens)
        np.testing.assert_allclose(got_out.logprobs, ref_out.logprobs, atol=1e-4)
    with count_compilations() as compiles:  # same K bucket (4) and observation bucket: nothing compiles
        obs, lengths = pad_batch([[40]] * 8, 4, 0, align="right")
        samplers[0].append(params, jax.tree.map(jnp.array, before), obs, lengths, np.isin(np.arange(8), [1, 2, 7]))
    assert compiles.count == 0
