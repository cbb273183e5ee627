"""Action parsing and name resolution on upstream's edge cases (spec §5.4, §6.1, §7.2) and on fuzzed text."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rr1_jax.rollout.actions import Action, parse_action, resolve_route
from rr1_jax.rollout.candidates import ROUTER_R1_POOL


@pytest.mark.parametrize("text, kind, reason", [
    ("<think>x</think>", "invalid", "no-action"),
    ("<search> Qwen2.5-7B-Instruct: </search>", "invalid", "invalid-3"),
    ("<search> LLM-Name:Your-Query </search>", "invalid", "invalid-1"),
    ("<search> Qwen: tell me your-query </search>", "invalid", "invalid-1"),
    ("<search> Qwen2.5-7B-Instruct who is it </search>", "invalid", "invalid-2"),
    ("<search>\nQwen2.5-7B-Instruct:\n  \n</search>", "invalid", "invalid-3"),
    ("<answer> Paris </answer>", "answer", None),
    ("<answer></answer>", "answer", None),
    ("<search>unclosed", "invalid", "no-action"),
    ("<search>a</answer>", "invalid", "no-action"),  # tags must pair
])
def test_upstream_edge_cases(text, kind, reason):
    action = parse_action(text)
    assert (action.kind, action.reason) == (kind, reason)


def test_first_match_decides():
    both = "<answer> A </answer> then <search> Qwen: q </search>"
    assert parse_action(both).kind == "answer" and parse_action(both).content == "A"
    reversed_ = "<search> Qwen: q </search><answer> A </answer>"
    assert parse_action(reversed_) == Action("route", content="Qwen: q", model_name="Qwen", query="q")


def test_route_split_first_colon_vs_upstream():
    text = "<search> LLaMA-3.1-70B-Instruct: what is the ratio 3:30? </search>"
    ours = parse_action(text)
    assert (ours.model_name, ours.query) == ("LLaMA-3.1-70B-Instruct", "what is the ratio 3:30?")
    upstream = parse_action(text, split="upstream")
    assert (upstream.model_name, upstream.query) == ("LLaMA-3.1-70B-Instruct", " what is the ratio 3")
    # upstream's invalid-3 looks at the text after the LAST colon; ours at everything after the first
    assert parse_action("<search> Qwen: a: </search>").kind == "route"
    assert parse_action("<search> Qwen: a: </search>", split="upstream").reason == "invalid-3"
    with pytest.raises(ValueError, match="split mode"):
        parse_action(text, split="last")


def test_name_resolution_exact_and_upstream():
    def resolve(text, mode):
        cand = resolve_route(parse_action(text), ROUTER_R1_POOL, mode)
        return None if cand is None else cand.name

    assert resolve("<search> qwen2.5-7b-instruct : q </search>", "exact") == "Qwen2.5-7B-Instruct"
    assert resolve("<search> Qwen: q </search>", "exact") is None
    assert resolve("<search> Qwen: q </search>", "upstream") == "Qwen2.5-7B-Instruct"
    assert resolve("<search> LLaMA-3.2-3B-Instruct: q </search>", "upstream") is None  # llama without size
    assert resolve("<search> llama 8b chatqa: q </search>", "upstream") == "LLaMA3-ChatQA-1.5-8B"
    assert resolve("<search> Nemotron llama 51b: q </search>", "upstream") is None  # unpriced upstream: no crash
    assert resolve("<search> GPT-4: q </search>", "upstream") is None
    assert resolve("<answer> Qwen </answer>", "upstream") is None  # not a route


_TAGGY = st.lists(st.sampled_from(["<search>", "</search>", "<answer>", "</answer>", ":", " ", "Qwen", "llama",
                                   "70b", "LLM-Name", "\n", "x", "?"]), max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=80), _TAGGY))
def test_fuzzed_text_never_raises(text):
    for split in ("first", "upstream"):
        action = parse_action(text, split=split)
        assert action.kind in ("answer", "route", "invalid")
        if action.is_route:
            assert ":" in action.content and action.query is not None
            resolve_route(action, ROUTER_R1_POOL, "exact")
            resolve_route(action, ROUTER_R1_POOL, "upstream")
        else:
            assert resolve_route(action, ROUTER_R1_POOL, "upstream") is None
