"""Stop-string automaton vs brute-force text search, a trained BPE tokenizer, and the upstream host cut."""
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rr1_jax.generate.stops import (StopMatcher, advance_matcher, ids_through_stop, token_bytes_from_tokenizer,
                                    upstream_cut)

STOPS = ["</search>", "</answer>"]
PIECES = [b"", b"<", b"/", b"</", b"search", b"sea", b"rch", b">", b">\n", b"</search>", b"a", b"</answer>",
          b"answer", b"x</", b"<//", b"ans", b"wer>", b"s", b"earch>", b"</sea", b"hi", b" ", b"</search"]


def first_fire(token_bytes, stops, ids):
    """Brute force: (index of the first token after which the text contains a stop, that stop's index) or None."""
    text = b""
    for i, t in enumerate(ids):
        text += token_bytes[t]
        for k, stop in enumerate(stops):
            if stop.encode() in text:
                return i, k
    return None


def run_matcher(matcher, ids):
    state = np.zeros((1,), np.int32)
    for i, t in enumerate(ids):
        state, completed = advance_matcher(matcher.table, matcher.num_states, state, np.array([t]))
        state, completed = np.asarray(state), int(np.asarray(completed)[0])
        if completed >= 0:
            return i, completed
    return None


def test_matcher_equals_brute_force_on_random_token_sequences():
    matcher = StopMatcher.build(STOPS, PIECES)
    rng = np.random.default_rng(0)
    fired = 0
    for _ in range(400):
        ids = rng.integers(0, len(PIECES), size=10).tolist()
        expected = first_fire(PIECES, STOPS, ids)
        assert run_matcher(matcher, ids) == expected, [PIECES[i] for i in ids]
        fired += expected is not None
    assert fired > 50  # the sequences exercise the stops, not just the no-match path


def test_matcher_fires_on_the_completing_token():
    matcher = StopMatcher.build(STOPS, PIECES)
    assert run_matcher(matcher, [4, 3, 4, 7]) == (3, 0)  # "search" "</" "search" ">": spans three tokens
    assert run_matcher(matcher, [20, 19, 6, 8]) == (3, 0)  # "</sea" "rch" ">\n": completes inside ">\n"
    assert run_matcher(matcher, [13, 4, 7]) == (2, 0)  # "x</" shares its "</" with the text before it
    assert run_matcher(matcher, [20, 19, 8]) is None  # "</sea>\n" is not a stop
    assert run_matcher(matcher, [3, 15, 16]) == (2, 1)  # "</" "ans" "wer>"
    assert run_matcher(StopMatcher.empty(len(PIECES)), [9, 11]) is None


def test_trained_bpe_tokenizer_splits_and_merges_stop_string():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = ["think</se arch>x</", "search results>\nmore", "<answer>yes</answer>", "x> y>\n z</s"] * 20
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    token_bytes = token_bytes_from_tokenizer(tokenizer)
    assert token_bytes[tokenizer.token_to_id("<eos>")] == b""
    matcher = StopMatcher.build(STOPS, token_bytes)
    text = "I think</search>\nmore text"
    ids = tokenizer.encode(text).ids
    assert b"".join(token_bytes[i] for i in ids) == text.encode()
    pieces = [token_bytes[i] for i in ids]
    assert not any(b"</search>" in p for p in pieces)  # the string really spans several tokens
    index, which = run_matcher(matcher, ids)
    assert which == 0 and b"</search>" in b"".join(pieces[:index + 1]) and b"</search>" not in b"".join(pieces[:index])


def test_upstream_cut_precedence_and_ids_through_stop():
    assert upstream_cut("a</answer>b</search>c") == "a</answer>b</search>"  # </search> wins even when later
    assert upstream_cut("a</answer>b</answer>") == "a</answer>"
    assert upstream_cut("no stop") == "no stop"
    ids = [20, 3, 4, 8, 10, 11]  # "hi" "</" "search" ">\n" "a" "</answer>"
    assert ids_through_stop(ids, PIECES) == 4  # keeps ">\n", the token completing "</search>"
    assert ids_through_stop([10, 11, 20], PIECES) == 2
    assert ids_through_stop([10, 20], PIECES) == 2
