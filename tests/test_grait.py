"""GRAIT (docs/methods.md §5): the stable-influence weights of eq. 10, the selection of
eqs. 7-8 and its two ablations, ``rait build`` with influence scores (rows, summary, bad score
files named by file, line and field, nothing written) and the CLI. No model is needed:
influence files are written by hand, and expected picks and weights are recomputed here from
the rows, independently of :mod:`rait.methods.grait`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.build import format_summary, run_build
from rait.cli import main
from rait.data.records import QARecord
from rait.errors import ConfigError, DataError
from rait.methods import METHODS
from rait.methods.base import DEFAULT_TEMPERATURE, BuildContext, Candidate, Selection, Sizes
from rait.methods.grait import (
    select_grait,
    select_no_o1,
    select_no_o2,
    stable_influence_weights,
)
from test_build import (
    Probe,
    assert_nothing_written,
    mixed_probe,
    oeqa_data,
    read_jsonl,
    write_jsonl,
)
from test_methods import TARGETS, cand

GRAIT_METHODS = ["grait", "grait-no-o1", "grait-no-o2"]


def naive_weights(i_sta, temperature: float) -> list[float]:
    """Eq. 10 as written: exp(I_sta/τ) / mean exp(I_sta/τ), no max subtracted."""
    scaled = [math.exp(s / temperature) for s in i_sta]
    mean = sum(scaled) / len(scaled)
    return [s / mean for s in scaled]


def gctx(n_van: int, n_idk: int, seed: int = 0, temperature: float = 0.05, tau_mu: float = 0.5):
    return BuildContext(
        sizes=Sizes(n_van, n_idk),
        targets=TARGETS,
        seed=seed,
        temperature=temperature,
        tau_mu=tau_mu,
    )


def picks(selection: Selection, kind: str) -> list:
    return [p for p in selection.picks if p.kind == kind]


def pick_ids(selection: Selection, kind: str) -> list[str]:
    return [p.candidate.id for p in picks(selection, kind)]


# --------------------------------------------------------------------------- eq. 10
scores = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)
temperatures = st.floats(min_value=1e-3, max_value=100, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(i_sta=st.lists(scores, min_size=1, max_size=12), temperature=temperatures)
def test_weights_are_non_negative_average_one_and_keep_the_order(i_sta, temperature):
    weights = stable_influence_weights(i_sta, temperature)
    assert len(weights) == len(i_sta)
    assert all(w >= 0 and math.isfinite(w) for w in weights)
    assert sum(weights) / len(weights) == pytest.approx(1.0, rel=1e-12)
    # the largest I_sta has exp(0) = 1 before normalising: never zero
    top = max(range(len(i_sta)), key=lambda j: i_sta[j])
    assert weights[top] >= 1.0 and weights[top] == max(weights)
    for a in range(len(i_sta)):
        for b in range(len(i_sta)):
            if i_sta[a] < i_sta[b]:
                assert weights[a] <= weights[b]
            elif i_sta[a] == i_sta[b]:
                assert weights[a] == weights[b]
    # zero only on underflow: exp((s - max)/τ) below the smallest double
    for s, w in zip(i_sta, weights):
        if (s - max(i_sta)) / temperature > -700:
            assert w > 0


@settings(max_examples=200, deadline=None)
@given(
    i_sta=st.lists(st.floats(min_value=-1, max_value=1), min_size=1, max_size=12),
    temperature=st.floats(min_value=0.05, max_value=10),
)
def test_weights_equal_eq_10_computed_naively(i_sta, temperature):
    weights = stable_influence_weights(i_sta, temperature)
    assert weights == pytest.approx(naive_weights(i_sta, temperature), rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    i_sta=st.lists(st.floats(min_value=-1, max_value=1), min_size=1, max_size=12),
    shift=st.floats(min_value=-1e3, max_value=1e3),
    temperature=st.floats(min_value=0.01, max_value=10),
)
def test_weights_ignore_a_constant_added_to_every_score(i_sta, shift, temperature):
    shifted = stable_influence_weights([s + shift for s in i_sta], temperature)
    assert shifted == pytest.approx(stable_influence_weights(i_sta, temperature), rel=1e-6)


def test_huge_scores_do_not_overflow():
    tau = 0.05
    i_sta = [1e6, 1e6 - 0.05, 1e6 + 0.1]
    with pytest.raises(OverflowError):
        naive_weights(i_sta, tau)  # what the max subtraction avoids
    weights = stable_influence_weights(i_sta, tau)
    assert all(math.isfinite(w) for w in weights)
    assert sum(weights) / 3 == pytest.approx(1.0)
    # ratios exp(Δ/τ): e^-1 and e^2 relative to the first
    assert weights[1] / weights[0] == pytest.approx(math.exp(-1), rel=1e-6)
    assert weights[2] / weights[0] == pytest.approx(math.exp(2), rel=1e-6)
    assert stable_influence_weights([-1e6, -1e6], tau) == [1.0, 1.0]


def test_extreme_spread_underflows_to_zero_not_nan():
    weights = stable_influence_weights([0.0, -100.0], 0.05)  # exp(-2000) underflows
    assert weights == [2.0, 0.0]


@pytest.mark.parametrize("temperature", [1e6, 1e9])
def test_a_large_temperature_gives_all_ones(temperature):
    weights = stable_influence_weights([-0.3, 0.0, 0.25, 0.6], temperature)
    assert weights == pytest.approx([1.0] * 4, abs=1e-5)
    assert weights[0] < weights[3]  # still ordered


def test_a_small_temperature_sharpens_the_weights():
    i_sta = [0.0, 0.1, 0.2]
    spread = [max(w) - min(w) for w in (stable_influence_weights(i_sta, t) for t in (1, 0.1))]
    assert spread[0] < spread[1]
    assert stable_influence_weights(i_sta, 0.05) == pytest.approx(naive_weights(i_sta, 0.05))
    assert DEFAULT_TEMPERATURE == 0.05


@pytest.mark.parametrize("temperature", [0.0, -0.05, -1.0, math.nan, math.inf, -math.inf])
def test_a_bad_temperature_is_a_value_error(temperature):
    with pytest.raises(ValueError, match="temperature"):
        stable_influence_weights([0.1, 0.2], temperature)


def test_no_scores_no_weights():
    assert stable_influence_weights([], 0.05) == []
    assert stable_influence_weights([0.7], 0.05) == [1.0]


# --------------------------------------------------------------------------- selection
def grait_pool():
    """8 known (µ ≥ 0.5, unique µ) and 8 unknown (unique I_ref, I_sta) candidates."""
    known = [cand(i, 0.5 + i / 16, 0.1, i_ref=0.0, i_sta=0.0) for i in range(8)]
    unknown = [
        cand(8 + i, i / 20, 0.1, i_ref=[0.3, -0.1, 0.5, 0.05, 0.45, -0.2, 0.1, 0.2][i],
             i_sta=[0.02, -0.1, 0.15, 0.3, -0.05, 0.2, 0.0, 0.1][i])
        for i in range(8)
    ]  # fmt: skip
    return known + unknown


def test_grait_takes_top_mu_answers_and_top_i_ref_refusals():
    pool = grait_pool()
    selection = select_grait(pool, gctx(3, 3, temperature=0.1))
    by_id = {c.id: c for c in pool}
    known = sorted((c for c in pool if c.mu >= 0.5), key=lambda c: -c.mu)
    unknown = sorted((c for c in pool if c.mu < 0.5), key=lambda c: -c.i_ref)
    assert set(pick_ids(selection, "van")) == {c.id for c in known[:3]} == {"q5", "q6", "q7"}
    assert set(pick_ids(selection, "idk")) == {c.id for c in unknown[:3]} == {"q10", "q12", "q8"}
    for p in picks(selection, "van"):
        assert p.answer == by_id[p.candidate.id].record.answers[0]
        assert p.weight == 1.0
    idk = picks(selection, "idk")
    assert {p.answer for p in idk} == {"I don't know"}
    # the weights of eq. 10 over the chosen IdK only, in their order
    expected = stable_influence_weights([p.candidate.i_sta for p in idk], 0.1)
    assert [p.weight for p in idk] == expected
    naive = dict(zip(["q8", "q10", "q12"], naive_weights([0.02, 0.15, -0.05], 0.1)))
    assert {p.candidate.id: p.weight for p in idk} == pytest.approx(naive)
    assert sum(p.weight for p in idk) / 3 == pytest.approx(1.0)
    rules = [(r.pool, r.kept, r.dropped) for r in selection.rules]
    assert rules == [(8, 3, 5), (8, 3, 5)]
    assert "I_ref" in selection.rules[1].rule and "0.1" in selection.rules[1].rule
    assert selection.adjustments == []


def test_grait_weights_follow_the_temperature():
    pool = grait_pool()
    sharp = picks(select_grait(pool, gctx(2, 4, temperature=0.05)), "idk")
    flat = picks(select_grait(pool, gctx(2, 4, temperature=5.0)), "idk")
    assert [p.candidate.id for p in sharp] == [p.candidate.id for p in flat]
    assert max(p.weight for p in sharp) > max(p.weight for p in flat) > 1.0
    assert all(p.weight == pytest.approx(1.0, abs=0.05) for p in flat)


def test_grait_splits_at_tau_mu():
    pool = grait_pool()
    selection = select_grait(pool, gctx(20, 20, tau_mu=0.75))
    assert all(p.candidate.mu >= 0.75 for p in picks(selection, "van"))
    assert all(p.candidate.mu < 0.75 for p in picks(selection, "idk"))
    assert len(picks(selection, "van")) == 4 and len(picks(selection, "idk")) == 12
    assert len(selection.adjustments) == 2  # both pools smaller than asked


def test_an_unknown_candidate_without_scores_is_rejected():
    record = QARecord(id="bare", question="Q?", answers=("A",))
    bare_unknown = Candidate(record, 0.1, 0.1)
    bare_known = Candidate(record, 0.9, 0.1)
    pool = grait_pool()
    with pytest.raises(ValueError, match="bare"):
        select_grait([*pool, bare_unknown], gctx(2, 2))
    # the known side is ranked by µ and needs no scores
    assert len(select_grait([*pool, bare_known], gctx(2, 2)).picks) == 4


@settings(max_examples=40, deadline=None)
@given(
    n_known=st.integers(min_value=2, max_value=9),
    n_unknown=st.integers(min_value=2, max_value=9),
    seed=st.integers(min_value=0, max_value=1000),
    rotate=st.integers(min_value=0, max_value=17),
)
def test_ties_are_broken_by_the_seed_not_the_input_order(n_known, n_unknown, seed, rotate):
    pool = [cand(i, 0.9, 0.1, i_ref=0.2, i_sta=i / 10) for i in range(n_known)] + [
        cand(n_known + i, 0.1, 0.1, i_ref=0.3, i_sta=i / 10) for i in range(n_unknown)
    ]
    k = rotate % len(pool)
    reordered = pool[k:] + pool[:k]
    for select in (select_grait, select_no_o2):
        a = select(pool, gctx(1, 1, seed))
        b = select(reordered[::-1], gctx(1, 1, seed))
        assert [(p.candidate.id, p.kind, p.weight) for p in a.picks] == [
            (p.candidate.id, p.kind, p.weight) for p in b.picks
        ]


def test_ties_are_broken_differently_by_other_seeds():
    pool = [cand(i, 0.9, 0.1, i_ref=0.0) for i in range(10)] + [
        cand(10 + i, 0.2, 0.1, i_ref=0.4) for i in range(10)
    ]
    van = {tuple(sorted(pick_ids(select_grait(pool, gctx(3, 3, s)), "van"))) for s in range(8)}
    idk = {tuple(sorted(pick_ids(select_grait(pool, gctx(3, 3, s)), "idk"))) for s in range(8)}
    assert len(van) > 1 and len(idk) > 1


def test_a_tie_never_beats_a_higher_score():
    pool = [cand(i, 0.9 if i < 2 else 0.6, 0.1) for i in range(6)] + [
        cand(6 + i, 0.1, 0.1, i_ref=0.5 if i == 3 else 0.1) for i in range(6)
    ]
    for seed in range(10):
        selection = select_grait(pool, gctx(3, 2, seed))
        van = pick_ids(selection, "van")
        assert {"q0", "q1"} <= set(van) and len(van) == 3
        assert "q9" in pick_ids(selection, "idk")


def test_no_o1_draws_at_random_and_keeps_the_weights():
    pool = grait_pool()
    top_idk = {"q10", "q12", "q8"}
    top_van = {"q5", "q6", "q7"}
    van_sets, idk_sets = set(), set()
    for seed in range(10):
        selection = select_no_o1(pool, gctx(3, 3, seed, temperature=0.1))
        van, idk = picks(selection, "van"), picks(selection, "idk")
        assert len(van) == 3 and len(idk) == 3
        assert all(p.candidate.mu >= 0.5 and p.weight == 1.0 for p in van)
        assert all(p.candidate.mu < 0.5 and p.answer == "I don't know" for p in idk)
        expected = stable_influence_weights([p.candidate.i_sta for p in idk], 0.1)
        assert [p.weight for p in idk] == expected
        assert sum(p.weight for p in idk) / 3 == pytest.approx(1.0)
        assert any(p.weight != 1.0 for p in idk)
        assert select_no_o1(pool, gctx(3, 3, seed, temperature=0.1)).picks == selection.picks
        van_sets.add(frozenset(p.candidate.id for p in van))
        idk_sets.add(frozenset(p.candidate.id for p in idk))
    assert len(van_sets) > 1 and len(idk_sets) > 1
    assert van_sets != {frozenset(top_van)} and idk_sets != {frozenset(top_idk)}
    assert "random" in select_no_o1(pool, gctx(3, 3)).rules[1].rule


@pytest.mark.parametrize("seed", [0, 3, 9])
def test_no_o2_is_grait_with_all_weights_one(seed):
    pool = grait_pool()
    grait = select_grait(pool, gctx(4, 3, seed))
    no_o2 = select_no_o2(pool, gctx(4, 3, seed))
    assert [(p.candidate.id, p.kind, p.answer) for p in no_o2.picks] == [
        (p.candidate.id, p.kind, p.answer) for p in grait.picks
    ]
    assert all(p.weight == 1.0 for p in no_o2.picks)
    assert any(p.weight != 1.0 for p in grait.picks)


def test_the_grait_methods_are_registered_as_needing_influence():
    assert {name for name, spec in METHODS.items() if spec.influence} == set(GRAIT_METHODS)
    assert METHODS["grait"].select is select_grait
    assert METHODS["grait-no-o1"].select is select_no_o1
    assert METHODS["grait-no-o2"].select is select_no_o2


# --------------------------------------------------------------------------- build
@pytest.fixture
def probe(tmp_path) -> Probe:
    know, _ = mixed_probe()
    return Probe(tmp_path, oeqa_data(len(know)), know)


def test_build_writes_scores_and_weights(probe, tmp_path):
    out = tmp_path / "out" / "set.jsonl"
    summary = run_build(probe.config("grait", n_van=6, n_idk=4, seed=2, temperature=0.1), out)
    rows = read_jsonl(out)
    scores = {r["id"]: r for r in probe.influence_rows}
    known = {k for k, r in probe.by_id.items() if r["mu"] >= 0.5}
    unknown = sorted(
        (k for k, r in probe.by_id.items() if r["mu"] < 0.5), key=lambda k: -scores[k]["i_ref"]
    )
    van = [r for r in rows if r["kind"] == "van"]
    idk = [r for r in rows if r["kind"] == "idk"]
    assert len(van) == 6 and len(idk) == 4
    for row in rows:
        assert row["i_ref"] == scores[row["id"]]["i_ref"]
        assert row["i_sta"] == scores[row["id"]]["i_sta"]
    # top µ among the known (µ has ties here: nothing left out has a higher µ)
    assert {r["id"] for r in van} <= known
    left = known - {r["id"] for r in van}
    assert min(r["mu"] for r in van) >= max(probe.by_id[k]["mu"] for k in left)
    assert all(r["weight"] == 1.0 for r in van)
    # top I_ref among the unknown (no ties), refusal, weights of eq. 10 over the chosen four
    assert {r["id"] for r in idk} == set(unknown[:4])
    assert {r["answer"] for r in idk} == {"I don't know"}
    chosen = sorted(unknown[:4])
    expected = dict(zip(chosen, naive_weights([scores[k]["i_sta"] for k in chosen], 0.1)))
    assert {r["id"]: r["weight"] for r in idk} == pytest.approx(expected)
    assert sum(r["weight"] for r in idk) / 4 == pytest.approx(1.0)
    weights = summary["weights"]
    assert weights["all_one"] is False
    assert weights["idk_mean"] == pytest.approx(1.0)
    assert weights["min"] == pytest.approx(min(expected.values()))
    assert weights["max"] == pytest.approx(max(max(expected.values()), 1.0))
    assert weights["mean"] == pytest.approx((6 + 4) / 10)
    assert summary["config"]["temperature"] == 0.1
    assert summary["config"]["influence"] == probe.influence
    text = format_summary(summary)
    assert f"weights: min {weights['min']:.3g}, max {weights['max']:.3g}" in text
    assert "top N_idk by I_ref" in text


def test_no_o2_build_has_all_one_weights_and_no_weights_line(probe):
    result = probe.build("grait-no-o2", n_van=6, n_idk=4, seed=2)
    assert all(r["weight"] == 1.0 for r in result.rows)
    assert result.summary["weights"]["all_one"] is True
    assert result.summary["weights"]["idk_mean"] == 1.0
    assert "weights:" not in format_summary(result.summary)


def test_no_o2_build_is_grait_without_the_weights(probe):
    result = probe.build("grait-no-o2", n_van=6, n_idk=4, seed=2)
    grait = probe.build("grait", n_van=6, n_idk=4, seed=2)
    strip = [{k: v for k, v in r.items() if k not in {"method", "weight", "rule"}}
             for r in result.rows]  # fmt: skip
    assert strip == [
        {k: v for k, v in r.items() if k not in {"method", "weight", "rule"}} for r in grait.rows
    ]


@pytest.mark.parametrize("method", GRAIT_METHODS)
def test_grait_without_influence_is_a_config_error(probe, tmp_path, method):
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(ConfigError, match="rait influence") as info:
        run_build(probe.config(method, n_van=2, n_idk=1, influence=None), out)
    assert "--influence" in str(info.value) and method in str(info.value)
    assert_nothing_written(out.parent)


@pytest.mark.parametrize("temperature", [0.0, -0.05, math.nan, math.inf])
def test_a_bad_temperature_is_a_config_error(probe, tmp_path, temperature):
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(ConfigError, match="temperature"):
        run_build(probe.config("grait", n_van=2, n_idk=1, temperature=temperature), out)
    assert_nothing_written(out.parent)


# --------------------------------------------------------------------------- bad scores
def first_line(rows, predicate) -> int:
    return next(i for i, r in enumerate(rows, start=1) if predicate(r))


def write_raw(path: str, rows) -> None:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    Path(path).write_text(text, encoding="utf-8")


def _edit(line: int, **fields):
    def edit(rows):
        rows[line - 1].update(fields)
        return line

    return edit


def _drop(line: int, key: str):
    def edit(rows):
        del rows[line - 1][key]
        return line

    return edit


def _raw(line: int, text: str):
    def edit(rows):
        row = rows[line - 1]
        rows[line - 1] = text.replace("ID", row["id"]).replace("SPLIT", row["split"])
        return line

    return edit


def _duplicate(line: int, of: int):
    def edit(rows):
        rows[line - 1] = dict(rows[of - 1])
        return line

    return edit


# case: (edit returning the line, field, words in the message)
BAD_SCORES = {
    "missing i_ref": (_drop(3, "i_ref"), "i_ref", "missing"),
    "missing i_sta": (_drop(7, "i_sta"), "i_sta", "missing"),
    "missing split": (_drop(2, "split"), "split", "missing"),
    "missing id": (_drop(5, "id"), "id", "missing"),
    "duplicate id": (_duplicate(6, of=2), "id", "duplicate id 'q1' (first on line 2)"),
    "i_ref a string": (_edit(4, i_ref="0.3"), "i_ref", "expected a number"),
    "i_sta a bool": (_edit(4, i_sta=True), "i_sta", "expected a number"),
    "i_ref null": (_edit(9, i_ref=None), "i_ref", "expected a number"),
    "i_ref NaN": (
        _raw(3, '{"id": "ID", "split": "SPLIT", "i_ref": NaN, "i_sta": 0.1}'),
        "i_ref",
        "not a finite number",
    ),
    "i_sta Infinity": (
        _raw(8, '{"id": "ID", "split": "SPLIT", "i_ref": 0.2, "i_sta": Infinity}'),
        "i_sta",
        "not a finite number",
    ),
    "i_ref -Infinity": (
        _raw(1, '{"id": "ID", "split": "SPLIT", "i_ref": -Infinity, "i_sta": 0.1}'),
        "i_ref",
        "not a finite number",
    ),
    "split unknown": (_edit(5, split="known"), "split", "expected 'ik' or 'idk'"),
    "split upper case": (_edit(5, split="IK"), "split", "expected 'ik' or 'idk'"),
    "id not in the probe": (_edit(3, id="zzz"), "id", "'zzz' is not in the probe"),
    "malformed JSON": (_raw(4, '{"id": "ID", "split": '), None, "not valid JSON"),
    "not an object": (_raw(2, '["ID", "SPLIT"]'), None, "JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCORES))
def test_bad_scores_name_file_line_and_field_and_write_nothing(probe, tmp_path, case):
    edit, field, words = BAD_SCORES[case]
    rows = [dict(r) for r in probe.influence_rows]
    line = edit(rows)
    write_raw(probe.influence, rows)
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(probe.config("grait", n_van=3, n_idk=2), out)
    message = str(info.value)
    assert f"{probe.influence}:{line}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert words.lower() in message.lower()
    assert_nothing_written(out.parent)


def test_a_split_from_another_threshold_names_the_first_disagreeing_line(probe, tmp_path):
    # scores split at T_c = 0.5, build at τµ = 0.8: 0.5 ≤ µ < 0.8 disagrees
    line = first_line(probe.influence_rows, lambda r: 0.5 <= r["mu"] < 0.8)
    row = probe.influence_rows[line - 1]
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(probe.config("grait", n_van=3, n_idk=2, tau_mu=0.8), out)
    message = str(info.value)
    assert f"{probe.influence}:{line}" in message and "field 'split'" in message
    assert "split 'ik'" in message and f"µ = {row['mu']}" in message and "0.8" in message
    assert_nothing_written(out.parent)
    # the same scores are fine at their own threshold
    assert run_build(probe.config("grait", n_van=3, n_idk=2, tau_mu=0.5), out)["n"] == 5


def test_a_flipped_split_is_caught(probe, tmp_path):
    rows = [dict(r) for r in probe.influence_rows]
    line = first_line(rows, lambda r: r["split"] == "idk")
    rows[line - 1]["split"] = "ik"
    write_jsonl(Path(probe.influence), rows)
    with pytest.raises(DataError) as info:
        probe.build("grait-no-o1", n_van=3, n_idk=2)
    assert f"{probe.influence}:{line}" in str(info.value)
    assert "field 'split'" in str(info.value) and "is idk" in str(info.value)


def test_a_probed_question_without_scores_is_named(probe, tmp_path):
    rows = [dict(r) for r in probe.influence_rows]
    gone = rows.pop(6)
    write_jsonl(Path(probe.influence), rows)
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(probe.config("grait", n_van=3, n_idk=2), out)
    message = str(info.value)
    assert message.startswith(f"{probe.influence}: ")
    assert f"1 probed question(s) have no scores (e.g. {gone['id']!r})" in message
    assert "rait influence" in message
    assert_nothing_written(out.parent)


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_an_empty_score_file_is_named(probe, tmp_path, text):
    Path(probe.influence).write_text(text, encoding="utf-8")
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(probe.config("grait-no-o2", n_van=3, n_idk=2), out)
    assert str(info.value) == f"{probe.influence}: the file has no rows"
    assert_nothing_written(out.parent)


def test_a_missing_score_file_is_named(probe, tmp_path):
    missing = str(tmp_path / "nope.influence.jsonl")
    with pytest.raises(DataError, match=r"nope\.influence\.jsonl: cannot read"):
        probe.build("grait", n_van=3, n_idk=2, influence=missing)


def test_scores_in_another_order_and_extra_fields_are_fine(probe):
    first = probe.build("grait", n_van=4, n_idk=3, seed=1).rows
    rows = [{**r, "note": "extra"} for r in reversed(probe.influence_rows)]
    write_jsonl(Path(probe.influence), rows)
    assert probe.build("grait", n_van=4, n_idk=3, seed=1).rows == first


# --------------------------------------------------------------------------- CLI
def cli_args(probe: Probe, out: Path, *extra: str) -> list[str]:
    return [
        *("build", "--method", "grait", "--data", probe.data, "--knowledge", probe.knowledge),
        *("--n-van", "5", "--n-idk", "4", "--seed", "1", "--out", str(out), *extra),
    ]


def test_cli_build_with_influence_and_temperature(probe, tmp_path, capsys):
    out = tmp_path / "cli" / "set.jsonl"
    code = main(cli_args(probe, out, "--influence", probe.influence, "--temperature", "0.1"))
    captured = capsys.readouterr()
    assert code == 0
    assert "grait: 9 samples (5 vanilla, 4 IdK)" in captured.out
    assert "weights: min" in captured.out
    rows = read_jsonl(out)
    idk = {r["id"]: r for r in rows if r["kind"] == "idk"}
    chosen = sorted(idk)
    expected = naive_weights([idk[k]["i_sta"] for k in chosen], 0.1)
    assert [idk[k]["weight"] for k in chosen] == pytest.approx(expected)
    # the default τ = 0.05 gives other weights for the same picks
    default = naive_weights([idk[k]["i_sta"] for k in chosen], 0.05)
    assert [idk[k]["weight"] for k in chosen] != pytest.approx(default)
    api = probe.build("grait", n_van=5, n_idk=4, seed=1, temperature=0.1).rows
    assert rows == api


def test_cli_grait_without_influence_is_one_error_line(probe, tmp_path, capsys):
    out = tmp_path / "cli" / "set.jsonl"
    code = main(cli_args(probe, out))
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rait: error:")
    assert "rait influence" in lines[0] and "--influence" in lines[0]
    assert captured.out == ""
    assert_nothing_written(out.parent)


def test_cli_bad_temperature_and_bad_scores_are_one_error_line(probe, tmp_path, capsys):
    out = tmp_path / "cli" / "set.jsonl"
    args = cli_args(probe, out, "--influence", probe.influence, "--temperature", "0")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rait: error:") and "temperature" in err[0]
    write_raw(probe.influence, [*probe.influence_rows[:2], "{oops", *probe.influence_rows[3:]])
    assert main(cli_args(probe, out, "--influence", probe.influence)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{probe.influence}:3" in err[0]
    assert_nothing_written(out.parent)


def test_idk_picks_and_weights_do_not_depend_on_the_seed(probe):
    """Across seeds the IdK picks (top I_ref, no ties) stay and only the row order moves."""
    seen = set()
    for seed in range(3):
        rows = probe.build("grait", n_van=5, n_idk=4, seed=seed).rows
        idk = sorted((r["id"], r["weight"]) for r in rows if r["kind"] == "idk")
        seen.add(tuple(idk))
    assert len(seen) == 1


def test_assumptions_of_the_probe_fixture(probe):
    """The build tests above need both sides of the split and unique I_ref values."""
    unknown = [r for r in probe.influence_rows if r["split"] == "idk"]
    assert len(unknown) >= 5
    assert len({r["i_ref"] for r in unknown}) == len(unknown)
    assert any(0.5 <= r["mu"] < 0.8 for r in probe.influence_rows)


def test_no_o1_build_is_cor_rait_with_the_weights(probe):
    """w/o O1 trains on Cor-RAIT's sets at the same seed, only with GRAIT's weights."""
    ablation = probe.build("grait-no-o1", n_van=6, n_idk=4, seed=2)
    cor = probe.build("cor-rait", n_van=6, n_idk=4, seed=2)
    assert {(r["id"], r["kind"]) for r in ablation.rows} == {(r["id"], r["kind"]) for r in cor.rows}
    assert not ablation.summary["weights"]["all_one"]
