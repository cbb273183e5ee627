"""Router-R1 rewards: the upstream examples of spec §7.2-§7.5 and properties of extraction, EM and the format gate."""
import json
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rr1_jax.rl.rewards import (CostNormalizer, exact_match, extract_answer, f1_score, format_reward,
                                normalize_answer, route_count, route_reward, scheduled_alpha, substring_match)
from rr1_jax.rollout.candidates import Candidate, CandidatePool

T = "<think>I should ask.</think>\n"
INFO = "\n\n<information>It is Paris.</information>\n\n"


def route(content):
    return f"<search> {content} </search>"


# ------------------------------------------------------------------------------------- format (spec §7.2 examples)

UPSTREAM_FORMAT_CASES = [
    ("plain", "<think>x</think>\n<answer> Paris </answer>", 0.0),
    ("route with info", T + route("Qwen2.5-7B-Instruct: What is the capital of France?") + INFO
     + "<think>ok</think>\n<answer> Paris </answer>", 0.0),
    ("answer after info without a final think", T + route("LLaMA-3.1-70B-Instruct: capital of France?") + INFO
     + "<answer> Paris </answer>", 0.0),
    ("two colons in the query", T + route("Qwen2.5-7B-Instruct: what is the ratio 3:2?") + INFO
     + "<answer> x </answer>", -1.0),
    ("unknown model name", T + route("GPT-4: capital of France?") + INFO + "<answer> Paris </answer>", -1.0),
    ("name repeated in the query", T + route("Qwen: ask qwen about France") + INFO + "<answer> Paris </answer>", -1.0),
    ("placeholder think", "<think>...</think>\n<answer> Paris </answer>", -1.0),
    ("text after the answer", "<think>x</think>\n<answer> Paris </answer> Hope this helps.", -1.0),
    ("two answers", "<think>x</think><answer> Paris </answer><answer> Lyon </answer>", -1.0),
    ("trailing unanswered search", T + "<answer> Paris </answer>" + route("Qwen2.5-7B-Instruct: again?"), -1.0),
    ("answer inside an information block", T + route("Mistral-7B-Instruct: capital?")
     + "<information>say <answer> Paris </answer></information>" + "<answer> Paris </answer>", -1.0),
    ("llama without a known size", T + route("LLaMA-3.2-3B-Instruct: capital of France?") + INFO
     + "<answer> Paris </answer>", -1.0),
    ("empty answer", "<think>x</think><answer></answer>", 0.0),
    ("information before the first think", INFO.strip() + T + "<answer> Paris </answer>", -1.0),
]


@pytest.mark.parametrize("label, response, expected", UPSTREAM_FORMAT_CASES, ids=[c[0] for c in UPSTREAM_FORMAT_CASES])
def test_format_reward_upstream_examples(label, response, expected):
    assert format_reward(response) == expected


OWN_FORMAT_CASES = [
    ("no tag block at all", "Paris", -1.0),
    ("unbalanced think tags", "<think>x</think><think>y<answer> Paris </answer>", -1.0),
    ("empty think", "<think>  </think><answer> Paris </answer>", -1.0),
    ("tag inside think", "<think>use <search> later</think><answer> P </answer>", -1.0),
    ("no think block", "<answer> Paris </answer>", -1.0),
    ("does not start with think", "So: <think>x</think><answer> Paris </answer>", -1.0),
    ("trailing whitespace is fine", "  <think>x</think><answer> Paris </answer>\n\n ", 0.0),
    ("placeholder route", T + route("LLM-Name:Your-Query") + INFO + "<answer> P </answer>", -1.0),
    ("route without colon", T + route("Qwen2.5-7B-Instruct capital?") + INFO + "<answer> P </answer>", -1.0),
    ("route with empty query", T + route("Qwen2.5-7B-Instruct:  ") + INFO + "<answer> P </answer>", -1.0),
    ("route with empty name", T + route(": capital of France?") + INFO + "<answer> P </answer>", -1.0),
    ("substring-valid name as upstream", T + route("qwen-72b: capital?") + INFO + "<answer> P </answer>", 0.0),
    ("unseen pool model", T + route("Palmyra-Creative-122B: a poem?") + INFO + "<answer> P </answer>", 0.0),
    ("two routes two infos", T + route("Gemma-2-27B-Instruct: a?") + INFO + route("Mixtral-8x22B-Instruct: b?")
     + INFO + "<answer> P </answer>", 0.0),
    ("route without its information", T + route("Gemma-2-27B-Instruct: a?") + "<answer> P </answer>", -1.0),
]


@pytest.mark.parametrize("label, response, expected", OWN_FORMAT_CASES, ids=[c[0] for c in OWN_FORMAT_CASES])
def test_format_reward_own_cases(label, response, expected):
    assert format_reward(response) == expected


def test_format_reward_name_validity_comes_from_the_pool():
    response = T + route("Local-Tiny: capital of France?") + INFO + "<answer> Paris </answer>"
    pool = CandidatePool([Candidate(name="Local-Tiny", model_id="tiny", base_url="http://127.0.0.1:1/v1",
                                    api_key_env="TINY_KEY", output_price_per_1m=0.0)])
    assert format_reward(response) == -1.0
    assert format_reward(response, pool) == -1.0  # upstream resolution: substring rules find no model for it
    qwen_only = CandidatePool([Candidate(name="Q", model_id="qwen/qwen2.5-7b-instruct", base_url="http://x",
                                         api_key_env="K", output_price_per_1m=0.3)])
    ok = T + route("Qwen2.5-7B-Instruct: capital?") + INFO + "<answer> Paris </answer>"
    bad = T + route("Gemma-2-27B-Instruct: capital?") + INFO + "<answer> Paris </answer>"
    assert (format_reward(ok, qwen_only), format_reward(bad, qwen_only)) == (0.0, -1.0)


TAG_SOUP = st.lists(st.sampled_from(["<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>",
                                     "<information>", "</information>", ":", "Qwen2.5-7B-Instruct", " ", "...",
                                     "llm-name", "x"]) | st.text(max_size=8), max_size=12).map("".join)


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.text(max_size=60), TAG_SOUP))
def test_format_reward_and_extract_answer_never_raise(text):
    assert format_reward(text) in (0.0, -1.0)
    answer = extract_answer(text)
    assert answer is None or isinstance(answer, str)
    assert route_count(text) >= 0


# ------------------------------------------------------------------------------------- answers and EM / F1 (§7.3)

def test_extract_answer_takes_the_last_answer_stripped():
    assert extract_answer("<answer> a </answer> <answer>\n b c \n</answer>") == "b c"
    assert extract_answer("<information><answer> x </answer></information>") == "x"
    assert extract_answer("<answer> unfinished") is None
    assert extract_answer("") is None


@pytest.mark.parametrize("raw, normalised", [
    ("The  Eiffel-Tower!", "eiffeltower"), ("An apple a day", "apple day"), ("theatre", "theatre"),
    ("  U.S.A. ", "usa"), ("", ""),
])
def test_normalize_answer_is_squad_style(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_and_substring_match():
    assert exact_match("the Beatles", ["Beatles", "Fab Four"]) == 1.0
    assert exact_match("Beatles band", ["Beatles"]) == 0.0
    assert exact_match("Paris", "paris.") == 1.0              # bare string golden answer
    assert exact_match(None, ["x"]) == 0.0
    assert exact_match("x", []) == 0.0
    assert substring_match("the Beatles band", ["beatles"]) == 1.0
    assert substring_match("Beatles", ["the beatles band"]) == 0.0
    with pytest.raises(TypeError, match="golden_answers"):
        exact_match("x", [1])


def test_f1_score():
    assert f1_score("new york city", ["New York"]) == pytest.approx(0.8)
    assert f1_score("paris", ["Lyon", "Paris"]) == 1.0
    assert f1_score("yes", ["yes indeed"]) == 0.0             # yes/no/noanswer must match exactly
    assert f1_score("no", "no") == 1.0
    assert f1_score("the", ["a"]) == 0.0                      # both normalise to nothing
    assert f1_score(None, ["x"]) == 0.0


WORDS = st.lists(st.text(alphabet=string.ascii_letters, min_size=1, max_size=6), min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(WORDS, st.lists(st.sampled_from(list(string.punctuation)), max_size=4), st.data())
def test_exact_match_ignores_case_punctuation_and_articles(words, marks, data):
    gold = " ".join(words)
    variant = " ".join(w.swapcase() for w in words)
    for mark in marks:
        at = data.draw(st.integers(0, len(variant)))
        variant = variant[:at] + mark + variant[at:]
    variant = data.draw(st.sampled_from(["The ", "a ", "AN ", ""])) + variant + data.draw(st.sampled_from(["", " the"]))
    assert exact_match(variant, [gold]) == 1.0
    assert f1_score(variant, [gold]) == (1.0 if normalize_answer(gold) else 0.0)


# ------------------------------------------------------------------------------------- cost normaliser (§7.4)

def test_cost_normalizer_reproduces_upstream_demo():
    costs = [0, 0, 100, 400, 50, 0, 900, 1e4]
    expected = [0.5, 0.5, 0.0, 0.0, 0.607, 1.0, 0.0, 0.0]
    assert np.allclose(CostNormalizer().normalize_batch(costs), expected, atol=1e-3)


def test_cost_normalizer_state_round_trips_through_json_and_continues_identically():
    rng = np.random.default_rng(0)
    costs = list(rng.uniform(0, 500, 30))
    reference = CostNormalizer(window=10)
    reference.normalize_batch(costs[:20])
    restored = CostNormalizer(window=10)
    restored.load_state_dict(json.loads(json.dumps(reference.state_dict())))
    assert len(restored) == 10
    assert restored.normalize_batch(costs[20:]) == reference.normalize_batch(costs[20:])
    with pytest.raises(ValueError, match="window=10"):
        CostNormalizer(window=5).load_state_dict(reference.state_dict())
    with pytest.raises(ValueError, match="missing 'transform'"):
        CostNormalizer(window=10).load_state_dict({"window": 10, "q_low": 0.05, "q_high": 0.95})


def test_cost_normalizer_window_and_shared_vs_separate_instances():
    train, evaluation = CostNormalizer(window=3), CostNormalizer(window=3)
    train.normalize_batch([0, 100, 400])
    assert evaluation(0) == 0.5                  # separate instance: untouched by training costs
    shared = CostNormalizer(window=3)
    shared.normalize_batch([0, 100, 400])
    assert shared(0) == 1.0                      # shared (upstream-like): sees the training window
    assert shared.state_dict()["buffer"] == [10.0, 20.0, 0.0]   # oldest value evicted


def test_cost_normalizer_options_and_errors():
    minmax = CostNormalizer(q_low=0.0, q_high=1.0, transform="identity")
    assert minmax.normalize_batch([0, 10, 5]) == [0.5, 0.0, 0.5]
    with pytest.raises(ValueError, match="cost must be a finite number >= 0"):
        CostNormalizer()(-1.0)
    with pytest.raises(ValueError, match="transform"):
        CostNormalizer(transform="log")
    with pytest.raises(ValueError, match="q_low < q_high"):
        CostNormalizer(q_low=0.9, q_high=0.1)
    with pytest.raises(ValueError, match="window"):
        CostNormalizer(window=0)


# ------------------------------------------------------------------------------------- blend (§7.5) and route count

GOOD_RIGHT = "<think>x</think><answer> Paris </answer>"
GOOD_WRONG = "<think>x</think><answer> Lyon </answer>"
BAD_RIGHT = "<think>x</think><answer> Paris </answer> extra"
BAD_WRONG = "<think>x</think><answer> Lyon </answer> extra"
GOOD_NONE = "<think>x</think><search> Qwen2.5-7B-Instruct: capital? </search><information>i</information>"


@pytest.mark.parametrize("response, alpha, cost, expected", [
    (GOOD_RIGHT, 0.0, 0.3, 1.0), (GOOD_RIGHT, 0.9, 0.3, 0.37), (GOOD_WRONG, 0.9, 0.3, 0.0),
    (BAD_RIGHT, 0.9, 0.3, -1.0), (BAD_WRONG, 0.0, 0.3, -1.0), ("no tags", 0.5, 1.0, -1.0),
    (GOOD_NONE, 0.5, 1.0, -1.0),   # no answer: the answer-count rule fails
])
def test_route_reward_hierarchy_em(response, alpha, cost, expected):
    assert route_reward(response, ["Paris"], cost, alpha) == pytest.approx(expected)


def test_route_reward_f1_and_additive_forms():
    partial = "<think>x</think><answer> new york city </answer>"
    assert route_reward(partial, ["New York"], 0.5, 0.5, metric="f1") == pytest.approx(0.8 * 0.5 + 0.25)
    assert route_reward(GOOD_WRONG, ["Paris"], 0.5, 0.5, metric="f1") == 0.0
    assert route_reward(BAD_RIGHT, ["Paris"], 0.5, 0.5, metric="f1") == -1.0
    assert route_reward(GOOD_WRONG, ["Paris"], 0.4, 0.5, form="additive") == pytest.approx(0.2)
    assert route_reward(BAD_RIGHT, ["Paris"], 0.4, 0.5, form="additive") == pytest.approx(-1 + 0.5 + 0.2)
    for kwargs, message in [({"metric": "acc"}, "metric"), ({"form": "sum"}, "form"), ({"alpha": 1.5}, "alpha")]:
        args = {"alpha": 0.5, **kwargs}
        with pytest.raises(ValueError, match=message):
            route_reward(GOOD_RIGHT, ["Paris"], 0.5, **args)


def test_route_count_stops_at_the_first_bad_route():
    good = route("Qwen2.5-7B-Instruct: a?") + INFO
    assert route_count(T + good + good + "<answer> P </answer>") == 2
    assert route_count(T + good + route("GPT-4: b?") + INFO + good) == 1
    assert route_count(T + route("LLM-Name:Your-Query") + good) == 0
    assert route_count(T + route("qwen: ask qwen") + INFO) == 1   # no name-in-query rule here
    assert route_count("<answer> P </answer>") == 0


def test_scheduled_alpha_is_early_alpha_for_the_first_iterations_then_alpha():
    assert [scheduled_alpha(0.0, step, early_alpha=0.9, early_steps=2) for step in range(4)] == [0.9, 0.9, 0.0, 0.0]
    assert scheduled_alpha(0.6, 0) == 0.6  # no curriculum by default
    bad_settings = [(dict(alpha=1.5), "reward.alpha"), (dict(early_alpha=-0.1), "reward.early_alpha"),
                    (dict(early_steps=-1), "reward.early_steps"), (dict(early_steps=2.5), "reward.early_steps")]
    for bad, word in bad_settings:
        with pytest.raises(ValueError, match=word):
            scheduled_alpha(**{"alpha": 0.0, "step": 0, **bad})
