"""The offline routing task: questions over an invented knowledge table that only the simulated candidates "know".

Entities (countries, cities, companies, founders, albums) get invented names, so no real model can answer and
the router must call candidates. Domains: ``capital`` (of a country), ``founder`` (of a company),
``founding_country`` (of a company), ``album_year`` (release year) and ``multihop`` (the capital of the country
where a company was founded: two facts). Train and test questions use disjoint entities, so a policy cannot pass
the test by memorising answers it saw in training observations. Same config (seed) -> identical task.
"""
from __future__ import annotations

import dataclasses
import random
import re

from rr1_jax.data.qa import QARecord

DOMAINS = ("capital", "founder", "founding_country", "album_year", "multihop")
DEFAULT_DOMAINS = ("capital", "founder", "album_year", "multihop")
AGENT_PROMPT_MARKER = "Here is the sub-question for you to assist with:"
QUESTION_TEMPLATES = {
    "capital": "What is the capital of {country}?",
    "founder": "Who founded {company}?",
    "founding_country": "In which country was {company} founded?",
    "album_year": "In what year was the album {album} released?",
    "multihop": "What is the capital of the country where {company} was founded?",
}
_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "io", "ou")
_CODAS = ("", "n", "r", "l", "s", "th", "x", "m")
_COUNTRY_SUFFIXES = ("ia", "land", "stan", "ora", "ovia", "esh")
_COMPANY_SUFFIXES = ("Labs", "Systems", "Works", "Dynamics", "Foods", "Motors", "Textiles", "Holdings")
RELEASE_YEARS = range(1955, 2024)  # albums' release years
_ALBUM_NOUNS = ("Echoes", "Tides", "Lanterns", "Mirrors", "Horizons", "Embers", "Voyages", "Signals")
# Words the query parser treats as relation cues; invented names must never contain them as whole words.
_RESERVED = {"capital", "country", "nation", "where", "who", "founded", "founder", "year", "album", "released",
             "when", "what", "which", "the", "of", "in", "was"}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and seed of the task; entity counts are per split (train and test entities are disjoint)."""

    seed: int = 0
    num_train: int = 400
    num_test: int = 200
    domains: tuple[str, ...] = DEFAULT_DOMAINS
    countries_per_split: int = 40
    companies_per_split: int = 60
    albums_per_split: int = 60

    def __post_init__(self):
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown or not self.domains:
            raise ValueError(f"SyntheticConfig.domains: unknown {unknown}; choose a non-empty subset of {DOMAINS}")
        for field in ("num_train", "num_test", "countries_per_split", "companies_per_split", "albums_per_split"):
            if getattr(self, field) < (0 if field.startswith("num_") else 2):
                raise ValueError(f"SyntheticConfig.{field} is too small: {getattr(self, field)}")


@dataclasses.dataclass(frozen=True)
class Fact:
    """One answerable fact: ``kind`` is a domain, ``entity`` the name it is about, ``answer`` the gold value."""

    kind: str
    entity: str
    answer: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.entity}"


class KnowledgeTable:
    """The invented world: relations between entities, plus lookup of the fact a free-text query asks about."""

    def __init__(self, capital_of: dict[str, str], founder_of: dict[str, str], country_of: dict[str, str],
                 year_of: dict[str, int]):
        self.capital_of, self.founder_of, self.country_of, self.year_of = capital_of, founder_of, country_of, year_of
        # Full names, plus the invented first word of company/album names (unique by construction) as an alias.
        self._kind_of_name = {**{c.lower(): ("country", c) for c in capital_of},
                              **{c.split()[0].lower(): ("company", c) for c in founder_of},
                              **{c.lower(): ("company", c) for c in founder_of},
                              **{a.split()[0].lower(): ("album", a) for a in year_of},
                              **{a.lower(): ("album", a) for a in year_of}}
        names = sorted(self._kind_of_name, key=len, reverse=True)
        self._name_pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE)

    def fact(self, kind: str, entity: str) -> Fact:
        """The fact of ``kind`` about ``entity`` (e.g. ``fact("multihop", "Trevix Labs")``)."""
        if kind == "capital":
            return Fact(kind, entity, self.capital_of[entity])
        if kind == "founder":
            return Fact(kind, entity, self.founder_of[entity])
        if kind == "founding_country":
            return Fact(kind, entity, self.country_of[entity])
        if kind == "album_year":
            return Fact(kind, entity, str(self.year_of[entity]))
        if kind == "multihop":
            return Fact(kind, entity, self.capital_of[self.country_of[entity]])
        raise ValueError(f"unknown fact kind {kind!r}; expected one of {DOMAINS}")

    def answers_of_kind(self, kind: str) -> list[str]:
        """Every value facts of ``kind`` can have (the pool plausible wrong answers come from)."""
        if kind in ("capital", "multihop"):
            return sorted(self.capital_of.values())
        if kind == "founder":
            return sorted(self.founder_of.values())
        if kind == "founding_country":
            return sorted(self.capital_of)
        return sorted({str(y) for y in self.year_of.values()})

    def lookup(self, query_text: str) -> Fact | None:
        """The fact a query asks about, from the entity names it mentions and a few relation cue words.

        Accepts a bare sub-question or the whole helper prompt (only the text after its marker is read).
        A company with "capital" asks the two-hop question; with "country"/"where"/"nation" its founding
        country; otherwise its founder. Else the first album, else the first country. None if no entity.
        """
        if AGENT_PROMPT_MARKER in query_text:
            query_text = query_text.split(AGENT_PROMPT_MARKER, 1)[1]
        mentioned: dict[str, str] = {}
        for match in self._name_pattern.finditer(query_text):
            kind, name = self._kind_of_name[match.group(1).lower()]
            mentioned.setdefault(kind, name)
        words = set(re.findall(r"[a-z]+", query_text.lower()))
        if "company" in mentioned:
            company = mentioned["company"]
            if "capital" in words:
                return self.fact("multihop", company)
            if words & {"country", "where", "nation"}:
                return self.fact("founding_country", company)
            return self.fact("founder", company)
        if "album" in mentioned:
            return self.fact("album_year", mentioned["album"])
        if "country" in mentioned:
            return self.fact("capital", mentioned["country"])
        return None


class _NameMaker:
    """Invented, unique, pronounceable words (never a reserved cue word, never reused)."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set(_RESERVED)

    def word(self, syllables: int = 2) -> str:
        while True:
            word = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables))
            word = (word + self.rng.choice(_CODAS)).capitalize()
            if word.lower() not in self.used:
                self.used.add(word.lower())
                return word


def _make_entities(names: _NameMaker, rng: random.Random, config: SyntheticConfig) -> dict[str, dict]:
    countries = [names.word() + rng.choice(_COUNTRY_SUFFIXES) for _ in range(config.countries_per_split)]
    capital_of = {country: names.word() for country in countries}
    companies = [f"{names.word()} {rng.choice(_COMPANY_SUFFIXES)}" for _ in range(config.companies_per_split)]
    founder_of = {company: f"{names.word()} {names.word(3)}" for company in companies}
    country_of = {company: rng.choice(countries) for company in companies}
    albums = [f"{names.word()} {rng.choice(_ALBUM_NOUNS)}" for _ in range(config.albums_per_split)]
    year_of = {album: rng.randint(RELEASE_YEARS.start, RELEASE_YEARS.stop - 1) for album in albums}
    return {"capital_of": capital_of, "founder_of": founder_of, "country_of": country_of, "year_of": year_of}


def _subject(kind: str, entities: dict[str, dict]) -> list[str]:
    if kind == "capital":
        return sorted(entities["capital_of"])
    if kind == "album_year":
        return sorted(entities["year_of"])
    return sorted(entities["founder_of"])


def _questions(split: str, count: int, entities: dict, table: KnowledgeTable, config: SyntheticConfig,
               rng: random.Random) -> list[QARecord]:
    records = []
    for i in range(count):
        domain = config.domains[i % len(config.domains)]
        entity = rng.choice(_subject(domain, entities))
        fact = table.fact(domain, entity)
        slot = {"capital": "country", "album_year": "album"}.get(domain, "company")
        records.append(QARecord(
            id=f"synthetic_s{config.seed}_{split}_{i:05d}",
            question=QUESTION_TEMPLATES[domain].format(**{slot: entity}), golden_answers=[fact.answer],
            data_source=f"synthetic_{domain}", metadata={"domain": domain, "entity": entity, "split": split}))
    rng.shuffle(records)
    return records


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """The knowledge table and its train/test questions (``QARecord`` with ``data_source="synthetic_<domain>"``)."""

    config: SyntheticConfig
    table: KnowledgeTable
    train: list[QARecord]
    test: list[QARecord]


def make_synthetic_task(config: SyntheticConfig = SyntheticConfig()) -> SyntheticTask:
    """Builds the world and the questions; a pure function of ``config``."""
    rng = random.Random(f"rr1_jax.synthetic/{config.seed}")
    names = _NameMaker(rng)
    per_split = {split: _make_entities(names, rng, config) for split in ("train", "test")}
    merged = {rel: {**per_split["train"][rel], **per_split["test"][rel]} for rel in per_split["train"]}
    table = KnowledgeTable(**merged)
    train = _questions("train", config.num_train, per_split["train"], table, config, rng)
    test = _questions("test", config.num_test, per_split["test"], table, config, rng)
    return SyntheticTask(config=config, table=table, train=train, test=test)
