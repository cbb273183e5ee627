"""The synthetic routing task: determinism, routing is worth it, query lookup, demonstrations in Router-R1 format."""
import re

import pytest

from rr1_jax.data.demonstrations import make_demonstration, make_demonstrations
from rr1_jax.data.synthetic import DOMAINS, SyntheticConfig, make_synthetic_task
from rr1_jax.data.synthetic_candidates import UNABLE_TO_ANSWER, count_completion_tokens, default_candidates, \
    find_candidate, reply_for_fact, simulated_answer, simulated_reply
from rr1_jax.data.synthetic_routing import routing_reference, two_hop_score

CONFIG = SyntheticConfig(seed=0, num_train=200, num_test=200)
TASK = make_synthetic_task(CONFIG)
PROFILES = default_candidates()


def test_same_seed_same_task_other_seed_other_task():
    again = make_synthetic_task(CONFIG)
    assert again.train == TASK.train and again.test == TASK.test
    assert again.table.capital_of == TASK.table.capital_of
    other = make_synthetic_task(SyntheticConfig(seed=1, num_train=200, num_test=200))
    assert [r.question for r in other.train] != [r.question for r in TASK.train]
    assert not set(other.table.capital_of) & set(TASK.table.capital_of)


def test_records_shape_and_disjoint_entities():
    assert len(TASK.train) == 200 and len(TASK.test) == 200
    assert {r.data_source for r in TASK.train} == {f"synthetic_{d}" for d in CONFIG.domains}
    assert all(len(r.golden_answers) == 1 and r.question.endswith("?") for r in TASK.train)
    train_entities = {r.metadata["entity"] for r in TASK.train}
    assert not train_entities & {r.metadata["entity"] for r in TASK.test}
    with pytest.raises(ValueError, match="unknown"):
        SyntheticConfig(domains=("capital", "weather"))


def test_oracle_beats_every_single_candidate_by_a_wide_margin():
    reference = routing_reference(TASK.test, PROFILES, TASK.table, seed=0)
    assert reference.oracle.em >= 0.95
    for score in reference.candidates:
        assert reference.oracle.em - score.em >= 0.25, score
    best = reference.best_single
    assert reference.oracle.cost < best.cost  # the oracle is also cheaper than the best single candidate
    cheapest = min(reference.candidates, key=lambda s: s.cost)
    assert cheapest.name == "LLaMA-3.1-8B-Instruct" and cheapest.em < 0.35  # cheap and weak
    # every domain has a specialist that is much better than the cheap all-rounder
    for source in {r.data_source for r in TASK.test}:
        assert max(s.em_by_source[source] for s in reference.candidates) >= 0.8


def test_difficulty_lowers_accuracy():
    hard = default_candidates(difficulty=0.5)
    easy_em = routing_reference(TASK.test, PROFILES, TASK.table).oracle.em
    assert routing_reference(TASK.test, hard, TASK.table).oracle.em < easy_em
    with pytest.raises(ValueError, match="difficulty"):
        default_candidates(difficulty=1.0)


def test_simulated_answers_are_deterministic_and_seeded():
    record = TASK.test[0]
    profile = find_candidate(PROFILES, "meta/llama-3.1-70b-instruct")
    first = [simulated_answer(p, r.question, TASK.table, seed=0) for p in PROFILES for r in TASK.test[:40]]
    assert first == [simulated_answer(p, r.question, TASK.table, seed=0) for p in PROFILES for r in TASK.test[:40]]
    assert first != [simulated_answer(p, r.question, TASK.table, seed=5) for p in PROFILES for r in TASK.test[:40]]
    reply = simulated_reply(profile, record.question, TASK.table)
    fact = TASK.table.fact(record.metadata["domain"], record.metadata["entity"])
    assert reply == reply_for_fact(profile, fact, TASK.table)  # callable from a fact key as well as from text
    assert reply.text.startswith(f"Answer: {reply.answer}.")
    assert reply.completion_tokens == count_completion_tokens(reply.text)
    assert reply.cost == pytest.approx(reply.completion_tokens * profile.price_per_1m)


def test_answer_function_reads_only_the_query_text():
    table = TASK.table
    company = next(iter(table.founder_of))
    country = table.country_of[company]
    mixtral = find_candidate(PROFILES, "Mixtral-8x22B-Instruct")
    assert table.lookup(f"Who started {company.upper()}?").kind == "founder"
    assert table.lookup(f"Which country is {company.split()[0]} from?").answer == country
    assert table.lookup(f"capital of the nation where {company} began").answer == table.capital_of[country]
    assert table.lookup(f"What is the capital of {country}").answer == table.capital_of[country]
    album = next(iter(table.year_of))
    assert table.lookup(f"When did {album} come out?").answer == str(table.year_of[album])
    helper_prompt = ("\nYou are a helpful assistant ... where a base model delegates ...\n\n"
                     f"Here is the sub-question for you to assist with:  Who founded {company}?\n\n")
    assert table.lookup(helper_prompt).kind == "founder"
    assert simulated_answer(mixtral, "What is the capital of France?", table) == UNABLE_TO_ANSWER
    # a verbose expensive model writes more tokens than a terse cheap one for the same question
    terse = simulated_reply(find_candidate(PROFILES, "LLaMA-3.1-8B-Instruct"), f"Who founded {company}?", table)
    verbose = simulated_reply(mixtral, f"Who founded {company}?", table)
    assert verbose.completion_tokens > 5 * terse.completion_tokens


def test_wrong_answers_are_plausible_values_of_the_same_domain():
    weak = find_candidate(PROFILES, "LLaMA-3.1-8B-Instruct")
    capitals = set(TASK.table.capital_of.values())
    wrong = [simulated_reply(weak, r.question, TASK.table) for r in TASK.test
             if r.data_source == "synthetic_capital"]
    wrong = [w for w, r in zip(wrong, TASK.test) if w.answer != w.fact.answer]
    assert wrong and all(w.answer in capitals for w in wrong)


_TAG_PAIRS = ("think", "search", "information", "answer")


def _check_router_r1_format(text, names):
    """Independent check of the rules of spec §7.2 that a demonstration must satisfy."""
    assert text.strip().startswith("<think>") and text.strip().endswith("</answer>")
    for tag in _TAG_PAIRS:
        assert text.count(f"<{tag}>") == text.count(f"</{tag}>")
    blocks = re.findall(r"<(search|answer|think|information)>(.*?)</\1>", text, re.DOTALL)
    assert sum(t == "answer" for t, _ in blocks) == 1
    assert sum(t == "search" for t, _ in blocks) == sum(t == "information" for t, _ in blocks)
    for tag, content in blocks:
        assert content.strip() not in ("", "...") and "<" not in content
        if tag == "search":
            assert content.count(":") == 1
            name, query = (part.strip() for part in content.split(":"))
            assert name in names and query and name.lower() not in query.lower()


def test_demonstrations_are_router_r1_trajectories():
    names = {p.name for p in PROFILES}
    demos = make_demonstrations(TASK.train[:60], TASK.table, PROFILES, strategy="oracle")
    assert all(d.correct for d in demos)
    for demo in demos:
        _check_router_r1_format(demo.text, names)
        assert re.search(r"<answer> (.*?) </answer>$", demo.text).group(1) == demo.record.golden_answers[0]
        assert [s.is_policy for s in demo.segments] == [True, False] * len(demo.routes) + [True]
        queries = re.findall(r"<search> [^:]+: (.*?) </search>", demo.text)
        for segment, name, query in zip(demo.segments[1::2], demo.routes, queries, strict=True):
            assert segment.text.startswith("\n\n<information>") and segment.text.endswith("</information>\n\n")
            reply = simulated_answer(find_candidate(PROFILES, name), query, TASK.table)
            assert segment.text == f"\n\n<information>{reply}</information>\n\n"  # what the candidate really says
    multihop = [d for d in demos if d.record.data_source == "synthetic_multihop"]
    assert multihop and all(len(d.routes) == 2 for d in multihop)
    assert len(make_demonstration(multihop[0].record, TASK.table, PROFILES, decompose_multihop=False).routes) == 1


def test_specialist_demonstrations_report_wrong_answers_honestly():
    demos = make_demonstrations(TASK.train[:80], TASK.table, PROFILES, strategy="specialist")
    wrong = [d for d in demos if not d.correct]
    assert wrong and len(wrong) < len(demos) / 2
    for demo in wrong:
        assert demo.final_answer not in demo.record.golden_answers
        assert demo.final_answer in demo.segments[-2].text  # the answer is the last observation's claim
    assert set(DOMAINS) >= {d.record.metadata["domain"] for d in demos}


def test_uniform_demonstrations_spread_over_candidates():
    from rr1_jax.data.demonstrations import make_demonstrations
    from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
    from rr1_jax.data.synthetic_candidates import default_candidates

    task = make_synthetic_task(SyntheticConfig(seed=3, num_train=120, num_test=10))
    demos = make_demonstrations(task.train, task.table, default_candidates(), seed=1, strategy="uniform")
    first_calls = [d.routes[0] for d in demos]
    assert len(set(first_calls)) == len(default_candidates())  # every candidate is demonstrated
    assert max(first_calls.count(n) for n in set(first_calls)) < 0.35 * len(demos)  # none dominates
    again = make_demonstrations(task.train, task.table, default_candidates(), seed=1, strategy="uniform")
    assert [d.routes for d in again] == [d.routes for d in demos]


def test_routes_per_question_demonstrate_every_candidate_once_per_question():
    from rr1_jax.data.demonstrations import make_demonstrations
    from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task
    from rr1_jax.data.synthetic_candidates import default_candidates

    profiles = default_candidates()
    task = make_synthetic_task(SyntheticConfig(seed=3, num_train=24, num_test=10))
    records = [r for r in task.train if r.metadata["domain"] != "multihop"][:8]
    demos = make_demonstrations(records, task.table, profiles, seed=1, strategy="uniform", style="terse",
                                routes_per_question=len(profiles))
    assert [d.record.id for d in demos] == [r.id for r in records for _ in profiles]
    for i, record in enumerate(records):
        group = demos[i * len(profiles):(i + 1) * len(profiles)]
        assert sorted(d.routes[0] for d in group) == sorted(p.name for p in profiles)
        assert group[0] == make_demonstrations([record], task.table, profiles, seed=1, strategy="uniform",
                                               style="terse")[0]  # variant 0 is the single-route demonstration
    with pytest.raises(ValueError, match="routes_per_question=6: use 1, or more with strategy='uniform'"):
        make_demonstrations(records, task.table, profiles, strategy="specialist", routes_per_question=6)


def test_terse_demonstrations_keep_routes_and_answers_and_pass_the_format_gate():
    from rr1_jax.rl.rewards import format_reward  # default pool: upstream's, whose names the profiles reuse

    records = TASK.train[:40]
    verbose = make_demonstrations(records, TASK.table, PROFILES, strategy="oracle")
    terse = make_demonstrations(records, TASK.table, PROFILES, strategy="oracle", style="terse")
    for long, short in zip(verbose, terse):
        assert short.routes == long.routes and short.final_answer == long.final_answer and short.cost == long.cost
        assert [s.text for s in short.segments if not s.is_policy] == [s.text for s in long.segments
                                                                        if not s.is_policy]
        assert len(short.text) < len(long.text)
        first = re.fullmatch(r"<think>[a-z ]+ ([^ <]+)</think>\n<search> ([^:]+): [^<]+ </search>",
                             short.segments[0].text)
        assert first and first[1] == first[2] == short.routes[0]  # the think names the pick, the search repeats it
        assert short.segments[-1].text == f"<answer> {short.final_answer} </answer>"
        assert format_reward(short.text) == 0.0
    with pytest.raises(ValueError, match="style must be one of"):
        make_demonstration(records[0], TASK.table, PROFILES, style="chatty")


def test_word_tokenizer_makes_every_entity_one_token_and_round_trips_task_text():
    from rr1_jax.data.renaming import rename_some
    from rr1_jax.data.synthetic_tokenizer import ROUTER_TAGS, answer_phrases, task_corpus, train_word_tokenizer

    task = make_synthetic_task(SyntheticConfig(seed=1, num_train=40, num_test=20))
    phrases = answer_phrases(task)
    assert phrases == sorted(set(task.table.founder_of.values()))  # the only answers of several words
    tokenizer = train_word_tokenizer(task_corpus(task, ["Question: {question}\n"]), phrases=phrases)
    for record in task.train + task.test:  # test entities too: the vocabulary covers the whole world
        entity = record.metadata["entity"].split()[0]
        assert len(tokenizer.encode(" " + entity, add_special_tokens=False)) == 1
    for name in phrases:  # a founder's name is one token, bare (after a tag) or after a space, like any word
        assert len(tokenizer.encode(name, add_special_tokens=False)) == 1
        assert len(tokenizer.encode(f"<answer> {name} </answer>", add_special_tokens=False)) == 4
    demos = make_demonstrations(task.train[:20], task.table, PROFILES, strategy="uniform", style="terse",
                                direct_multihop=0.5)  # both multi-hop plans: "capital where founded"
    assert any("<think>capital where founded " in demo.text for demo in demos)
    for demo in demos + rename_some(demos, task.table, 1.0):  # renamed founders' names stay one token
        ids = tokenizer.encode(demo.text, add_special_tokens=False)
        assert tokenizer.decode(ids) == demo.text and tokenizer.unk_token_id not in ids
        for name in phrases:
            if name in demo.text:
                assert tokenizer.convert_tokens_to_ids(tokenizer.tokenize(name)) != [tokenizer.unk_token_id]
    for kind in DOMAINS:  # any value a (wrong) reply can name, mentioned by a question or not
        for value in task.table.answers_of_kind(kind):
            assert tokenizer.unk_token_id not in tokenizer.encode(f"<information>{value}.", add_special_tokens=False)
    for tag in ROUTER_TAGS:
        assert len(tokenizer.encode(tag, add_special_tokens=False)) == 1
    years = tokenizer.encode(" 1901 2098", add_special_tokens=False)
    assert len(years) == 2 and tokenizer.unk_token_id not in years
    assert tokenizer.encode("Zzyzx", add_special_tokens=False) == [tokenizer.unk_token_id]
    named = train_word_tokenizer(task_corpus(task, ["Question: {question}\n"]), [p.name for p in PROFILES])
    for profile in PROFILES:  # a routing choice is one token, bare or after a space (then chosen at the word before)
        text = f"<think>capital {profile.name}</think>\n<search> {profile.name}: {task.test[0].question} </search>"
        ids = named.encode(text, add_special_tokens=False)
        assert named.decode(ids) == text and len(named.encode(profile.name, add_special_tokens=False)) == 1
        assert ids[:3] == named.encode("<think>capital", add_special_tokens=False) + named.encode(
            " " + profile.name, add_special_tokens=False)


def test_task_tokenizers_are_the_same_in_every_process():
    """A run rebuilds its tokenizer from the config, so ids must not depend on the process (hash seed)."""
    import subprocess
    import sys

    code = ("from rr1_jax.data.synthetic import SyntheticConfig, make_synthetic_task\n"
            "from rr1_jax.data.synthetic_tokenizer import task_corpus, train_task_tokenizer, train_word_tokenizer\n"
            "task = make_synthetic_task(SyntheticConfig(seed=2, num_train=20, num_test=5))\n"
            "text = ' \\n'.join(r.question for r in task.test) + ' <think> x'\n"
            "print(train_word_tokenizer(task_corpus(task), ['Qwen2.5-7B-Instruct']).encode(text))\n"
            "print(train_task_tokenizer(task_corpus(task), 400).encode(text))\n")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert len(outputs) == 1, outputs


def test_direct_multihop_fraction_demonstrates_both_plans():
    records = [r for r in TASK.train if r.metadata["domain"] == "multihop"]
    decomposed = make_demonstrations(records, TASK.table, PROFILES, strategy="uniform", style="terse")
    assert all(len(d.routes) == 2 or d.final_answer not in TASK.table.capital_of.values() for d in decomposed)
    mixed = make_demonstrations(records, TASK.table, PROFILES, strategy="uniform", style="terse",
                                direct_multihop=0.5)
    direct = [d for d in mixed if len(d.routes) == 1 and d.record.question in d.segments[0].text]
    assert 0.2 * len(records) < len(direct) < 0.8 * len(records)
    assert mixed == make_demonstrations(records, TASK.table, PROFILES, strategy="uniform", style="terse",
                                        direct_multihop=0.5)
    assert all(len(d.routes) == 1 for d in make_demonstrations(records, TASK.table, PROFILES, direct_multihop=1.0))
    with pytest.raises(ValueError, match="direct_multihop"):
        make_demonstrations(records, TASK.table, PROFILES, direct_multihop=-0.1)


def test_two_hop_plan_scores_what_the_decomposed_demonstrations_do():
    multihop = [r for r in TASK.test if r.data_source == "synthetic_multihop"]
    qwen, mistral = find_candidate(PROFILES, "Qwen2.5-7B-Instruct"), find_candidate(PROFILES, "Mistral-7B-Instruct")
    for candidate in (qwen, mistral):
        score = two_hop_score(multihop, candidate, candidate, TASK.table, seed=0)
        # a one-candidate pool makes the uniform demonstration call that candidate for both hops
        demos = [make_demonstration(r, TASK.table, [candidate], seed=0, strategy="uniform") for r in multihop]
        assert all(len(d.routes) == 2 for d in demos if d.routes and d.final_answer != "unknown")
        assert score.em == pytest.approx(sum(d.correct for d in demos) / len(demos))
        assert score.cost == pytest.approx(sum(d.cost for d in demos) / len(demos))
    qwen_qwen = two_hop_score(multihop, qwen, qwen, TASK.table)
    assert 0.6 <= qwen_qwen.em <= 0.95  # about 0.85 x 0.92: the chained specialists
    assert two_hop_score(multihop, mistral, mistral, TASK.table).em < qwen_qwen.em
    with pytest.raises(ValueError, match="not a multi-hop question"):
        two_hop_score([r for r in TASK.test if r.data_source == "synthetic_capital"][:1], qwen, qwen, TASK.table)
