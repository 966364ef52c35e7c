"""The selection machinery of :mod:`rait.methods` without files: seeded takes (random, top and
bottom by a key), pools smaller than asked, the µ split, knowledge flow, the R-Tuning-U
entropy split, and property tests of every method's selection on random candidates.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.data.records import QARecord
from rait.errors import ConfigError
from rait.methods import METHODS, get_method
from rait.methods.base import (
    BuildContext,
    Candidate,
    Selection,
    Sizes,
    Targets,
    derived_rng,
    split_by_mu,
    take,
)
from rait.prompts import RTUNING_UNCERTAINTY_TEXTS

TARGETS = Targets("I don't know", RTUNING_UNCERTAINTY_TEXTS)


def cand(
    i: int,
    mu: float,
    sigma: float,
    mu_after: float | None = None,
    i_ref: float | None = None,
    i_sta: float | None = None,
    **knowledge,
):
    """A candidate; GRAIT's scores default to fixed values spread over [-0.3, 0.7]."""
    record = QARecord(id=f"q{i}", question=f"Question {i}?", answers=(f"A{i}",))
    return Candidate(
        record,
        mu,
        sigma,
        knowledge={"id": f"q{i}", **knowledge},
        mu_after=mu_after,
        sigma_after=None if mu_after is None else sigma,
        i_ref=((i * 37) % 11) / 10 - 0.3 if i_ref is None else i_ref,
        i_sta=((i * 53) % 7) / 10 - 0.3 if i_sta is None else i_sta,
    )


def ctx(n_van: int, n_idk: int, seed: int = 0, strict: bool = False) -> BuildContext:
    return BuildContext(sizes=Sizes(n_van, n_idk, strict), targets=TARGETS, seed=seed)


def picked(selection: Selection, kind: str | None = None) -> list[str]:
    return [p.candidate.id for p in selection.picks if kind is None or p.kind == kind]


# --------------------------------------------------------------------------- take
def test_take_ranks_top_and_bottom_by_the_key():
    pool = [cand(i, 0.9, s) for i, s in enumerate([0.3, 0.9, 0.1, 0.7, 0.5])]
    out = Selection()
    common = {"name": "t", "sizes": Sizes(2, 2), "selection": out, "key": lambda c: c.sigma}
    top = take(pool, 2, order="top", rng=random.Random(0), **common)
    bottom = take(pool, 2, order="bottom", rng=random.Random(0), **common)
    assert [c.id for c in top] == ["q1", "q3"]
    assert [c.id for c in bottom] == ["q2", "q0"]
    assert out.adjustments == []


def test_take_random_is_a_seeded_sample_without_repeats():
    pool = [cand(i, 0.9, 0.1) for i in range(20)]
    common = {"name": "t", "sizes": Sizes(5, 0), "selection": Selection(), "order": "random"}
    a = take(pool, 5, rng=derived_rng(1, "x"), **common)
    b = take(pool, 5, rng=derived_rng(1, "x"), **common)
    c = take(pool, 5, rng=derived_rng(2, "x"), **common)
    assert [x.id for x in a] == [x.id for x in b]
    assert len({x.id for x in a}) == 5
    assert {x.id for x in a} != {x.id for x in c}


def test_take_reports_a_short_pool_or_stops_when_strict():
    pool = [cand(i, 0.9, 0.1) for i in range(3)]
    out = Selection()
    got = take(
        pool, 5, name="N_x", sizes=Sizes(5, 0), selection=out, order="random", rng=random.Random()
    )
    assert sorted(c.id for c in got) == ["q0", "q1", "q2"]
    assert out.adjustments == ["N_x: asked for 5, the pool has 3; all 3 taken (no up-sampling)"]
    with pytest.raises(ConfigError, match="strict_sizes"):
        take(
            pool,
            4,
            name="N_x",
            sizes=Sizes(4, 0, strict=True),
            selection=Selection(),
            order="top",
            rng=random.Random(),
            key=lambda c: c.sigma,
        )


def test_take_rejects_negative_sizes_and_keyless_ranking():
    pool = [cand(0, 0.9, 0.1)]
    common = {"name": "t", "sizes": Sizes(1, 0), "selection": Selection(), "rng": random.Random()}
    with pytest.raises(ConfigError, match="negative"):
        take(pool, -1, order="random", **common)
    with pytest.raises(ValueError, match="key"):
        take(pool, 1, order="top", **common)


def test_derived_rng_is_sha256_of_seed_and_labels():
    expected = random.Random(
        int.from_bytes(hashlib.sha256(b"3\x1fcraft\x1fvan").digest()[:8], "big")
    ).random()
    assert derived_rng(3, "craft", "van").random() == expected
    assert derived_rng(3, "craft", "idk").random() != expected
    assert derived_rng(4, "craft", "van").random() != expected


@pytest.mark.parametrize("method", ["corcer-rait", "cor-rait", "van-tuning"])
def test_selection_does_not_depend_on_the_data_order(method):
    candidates = [cand(i, 0.9, 0.5) for i in range(6)]
    for seed in range(5):
        forward = picked(METHODS[method].select(candidates, ctx(1, 0, seed)))
        backward = picked(METHODS[method].select(candidates[::-1], ctx(1, 0, seed)))
        assert forward == backward


# --------------------------------------------------------------------------- splits
def test_split_by_mu_puts_the_threshold_on_the_known_side():
    known, unknown = split_by_mu([cand(0, 0.5, 0), cand(1, 0.4999, 0), cand(2, 1.0, 0)], 0.5)
    assert [c.id for c in known] == ["q0", "q2"]
    assert [c.id for c in unknown] == ["q1"]


def test_knowledge_flow_needs_the_rehearsed_probe():
    assert cand(0, 0.3, 0.2, mu_after=0.1).delta_mu == pytest.approx(-0.2)
    assert cand(0, 0.3, 0.2, mu_after=0.3).delta_mu == 0.0
    with pytest.raises(ValueError, match="q0"):
        _ = cand(0, 0.3, 0.2).delta_mu


def test_get_method_names_the_choices():
    assert get_method("craft") is METHODS["craft"]
    with pytest.raises(ConfigError, match="cor-rait"):
        get_method("CRaFT")


def test_rtuning_u_ties_in_entropy_are_split_by_id():
    candidates = [cand(i, 0.5, 0.0, rtuning_u_entropy=1.0) for i in range(4)]
    selection = METHODS["rtuning-u"].select(candidates, ctx(4, 4))
    assert sorted(picked(selection, "van")) == ["q0", "q1"]
    assert sorted(picked(selection, "idk")) == ["q2", "q3"]


# --------------------------------------------------------------------------- properties
entries = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),  # µ
        st.integers(min_value=0, max_value=4),  # σ (ties)
        st.sampled_from([-0.25, 0.0, 0.25]),  # Δµ
        st.booleans(),  # greedy_correct
        st.integers(min_value=0, max_value=5),  # R-Tuning-U entropy (ties)
    ),
    min_size=0,
    max_size=20,
)


def pools(name: str, candidates: list[Candidate]) -> tuple[set[str], set[str]]:
    """The van and IdK pools of each method, from docs/methods.md §3 and §4."""
    ids = {c.id for c in candidates}
    known = {c.id for c in candidates if c.mu >= 0.5}
    if name == "van-tuning":
        return ids, set()
    if name in {"cor-rait", "corcer-rait", "craft-no-flow", "grait", "grait-no-o1", "grait-no-o2"}:
        return known, ids - known
    if name in {"craft", "craft-no-cer"}:
        return known, {c.id for c in candidates if c.mu < 0.5 and c.delta_mu < 0}
    if name in {"rtuning-padding", "rtuning-replace"}:
        certain = {c.id for c in candidates if c.knowledge["greedy_correct"]}
        return certain, ids - certain
    ranked = sorted(candidates, key=lambda c: (c.knowledge["rtuning_u_entropy"], c.id))
    certain = {c.id for c in ranked[: len(ranked) // 2]}  # floor, as rtuning_u_certain
    return certain, ids - certain


@settings(max_examples=150, deadline=None)
@given(
    rows=entries,
    n_van=st.integers(min_value=0, max_value=12),
    n_idk=st.integers(min_value=0, max_value=12),
    name=st.sampled_from(sorted(METHODS)),
    seed=st.integers(min_value=0, max_value=5),
)
def test_every_method_takes_min_of_asked_and_pool_without_repeats(rows, n_van, n_idk, name, seed):
    candidates = [
        cand(i, mu, s / 4, mu_after=min(1.0, max(0.0, mu + d)), greedy_correct=g,
             rtuning_u_entropy=float(e))
        for i, (mu, s, d, g, e) in enumerate(rows)
    ]  # fmt: skip
    spec = METHODS[name]
    selection = spec.select(candidates, ctx(n_van, n_idk, seed))
    again = spec.select(candidates, ctx(n_van, n_idk, seed))
    assert [(p.candidate.id, p.kind, p.answer) for p in selection.picks] == [
        (p.candidate.id, p.kind, p.answer) for p in again.picks
    ]
    all_ids = picked(selection)
    assert len(all_ids) == len(set(all_ids))
    van_pool, idk_pool = pools(name, candidates)
    van, idk = set(picked(selection, "van")), set(picked(selection, "idk"))
    assert van <= van_pool and idk <= idk_pool
    if name == "van-tuning":
        assert not idk and len(van) == min(n_van + n_idk, len(candidates))
        shortfalls = int(n_van + n_idk > len(candidates))
    else:
        assert len(van) == min(n_van, len(van_pool))
        assert len(idk) == min(n_idk, len(idk_pool))
        shortfalls = int(n_van > len(van_pool)) + int(n_idk > len(idk_pool))
    assert len(selection.adjustments) == shortfalls
    weighted = [p.weight for p in selection.picks if p.kind == "idk"]
    if name in {"grait", "grait-no-o1"} and weighted:
        assert all(w >= 0 for w in weighted)
        assert sum(weighted) / len(weighted) == pytest.approx(1.0)
        assert all(p.weight == 1.0 for p in selection.picks if p.kind == "van")
    else:
        assert all(p.weight == 1.0 for p in selection.picks)
    if name in {"grait", "grait-no-o2"}:
        mu = {c.id: c.mu for c in candidates}
        ref = {c.id: c.i_ref for c in candidates}
        if van and van_pool - van:
            assert min(mu[k] for k in van) >= max(mu[k] for k in van_pool - van)
        if idk and idk_pool - idk:
            assert min(ref[k] for k in idk) >= max(ref[k] for k in idk_pool - idk)
    reports = selection.rules[-2:] if name != "van-tuning" else selection.rules
    kept = [r.kept for r in reports]
    assert kept == ([len(van)] if name == "van-tuning" else [len(van), len(idk)])
    for report in selection.rules:
        assert 0 <= report.kept <= report.pool and report.dropped == report.pool - report.kept
    if name in {"craft", "corcer-rait", "craft-no-flow"}:
        sigma = {c.id: c.sigma for c in candidates}
        if van and van_pool - van:
            assert min(sigma[k] for k in van) >= max(sigma[k] for k in van_pool - van)
        if idk and idk_pool - idk:
            assert max(sigma[k] for k in idk) <= min(sigma[k] for k in idk_pool - idk)
    for p in selection.picks:
        if name == "rtuning-replace" and p.kind == "idk":
            assert p.answer in RTUNING_UNCERTAINTY_TEXTS
        elif name in {"rtuning-padding", "rtuning-u"}:
            word = "sure" if p.kind == "van" else "unsure"
            assert p.answer.startswith(p.candidate.record.answers[0] + ". ")
            assert p.answer.endswith(f" I am {word}")
        elif p.kind == "idk":
            assert p.answer == "I don't know"
        else:
            assert p.answer == p.candidate.record.answers[0]
