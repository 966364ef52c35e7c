"""The papers' printed rows (rait.references) and THS on printed, rounded rates."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.cli import main
from rait.errors import ConfigError
from rait.metrics import MetricError, ths, ths_rounding_range
from rait.references import (
    ROUNDING,
    load_reference,
    paper_model,
    reference_names,
    reference_rows,
)


def test_both_tables_ship_with_every_row():
    assert reference_names() == ["craft-table2", "grait-table2"]
    grait, craft = load_reference("grait-table2"), load_reference("craft-table2")
    # 2 models × 8 printed rows (GRAIT) / 7 (CRaFT) × 4 test sets
    assert len(grait["rows"]) == 64 and len(craft["rows"]) == 56
    for ref in (grait, craft):
        assert "Table 2" in ref["source"]
        for row in ref["rows"]:
            assert row["model"] in ("LLaMA2-7B-Chat", "LLaMA3-8B-Instruct")
            assert row["test_set"] in ("mmlu-val", "arc-challenge", "triviaqa-dev", "nq-open-dev")


@pytest.mark.parametrize("name", ["grait-table2", "craft-table2"])
def test_every_printed_ths_is_reproduced_or_flagged_as_a_misprint(name):
    """rait.metrics.ths on each row's printed Pc/Pw and Init-Basic's reproduces the printed THS
    within the rounding of its inputs, except the rows the data file flags, which no rounding
    reproduces. The file's flags and the check must agree row by row."""
    raw = json.loads(
        (
            pytest.importorskip("importlib.resources").files("rait.references") / f"{name}.json"
        ).read_text("utf-8")
    )
    ref = load_reference(name)
    for flagged, row in zip(raw["rows"], ref["rows"], strict=True):
        check = row["check"]
        assert check["reproduced"] is ("misprint" not in flagged), (row, check)
    reproduced = sum(r["check"]["reproduced"] is True for r in ref["rows"])
    assert reproduced == {"grait-table2": 57, "craft-table2": 52}[name]


def test_the_known_misprints_are_what_the_arithmetic_says():
    rows = {
        (r["model"], r["printed_method"], r["test_set"]): r
        for r in load_reference("grait-table2")["rows"]
    }
    # LLaMA2 MMLU Init-Refuse: (36.4·52.8 − 38.9·45.6) / 52.8 = 2.80, printed 3.9
    check = rows["LLaMA2-7B-Chat", "Init-Refuse", "mmlu-val"]["check"]
    assert check["recomputed"] == pytest.approx((36.4 * 52.8 - 38.9 * 45.6) / 52.8 / 100)
    assert not check["reproduced"]
    # LLaMA3 ARC-c Init-Basic prints 80.6 + 19.5 = 100.1: within rounding, THS 0 reproduced
    assert rows["LLaMA3-8B-Instruct", "Init-Basic", "arc-challenge"]["check"]["reproduced"]
    # LLaMA3 NQ w/o O1 prints 25.6 + 75.0 = 100.6: beyond any rounding
    bad = rows["LLaMA3-8B-Instruct", "w/o O1", "nq-open-dev"]["check"]
    assert not bad["reproduced"] and "exceeds 1" in bad["why"]


def test_ths_accepts_printed_rates_that_sum_past_one_only_within_their_rounding():
    assert ths(0.806, 0.195, 0.806, 0.195, rounding=ROUNDING) == pytest.approx(0.0)
    with pytest.raises(MetricError, match="exceeds 1"):
        ths(0.806, 0.195, 0.806, 0.195)  # exact shares: 100.1 % is impossible
    with pytest.raises(MetricError, match="more than the rounding"):
        ths(0.256, 0.75, 0.403, 0.597, rounding=ROUNDING)  # 100.6 %: no rounding gives it
    with pytest.raises(MetricError, match="more than the rounding"):
        ths(0.5, 0.502, 0.4, 0.5, rounding=ROUNDING)  # 100.2 %: two steps past, not one


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(1, 999),
    st.integers(0, 1000),
)
def test_rounding_range_contains_the_exact_ths(c, w, w0, c0):
    """Exact rates (counts over 1,000 and a random denominator) rounded to 0.1 %: the range
    computed from the rounded ones contains the THS of the exact ones."""
    n = 1009  # not a multiple of 1,000, so rounding moves every rate
    if c + w > n or c0 + w0 > n:
        return
    exact = (c / n, w / n, c0 / n, w0 / n)
    printed = tuple(round(x, 3) for x in exact)
    if printed[3] - ROUNDING / 2 <= 0:
        return
    low, high = ths_rounding_range(*printed, ROUNDING)
    true = ths(*exact)
    assert low - 1e-12 <= true <= high + 1e-12


def test_reference_rows_pick_the_runs_test_sets_and_model():
    rows = reference_rows(
        "grait-table2", ["mmlu-val", "arc-challenge"], "meta-llama/Meta-Llama-3-8B-Instruct"
    )
    assert {r["test_set"] for r in rows} == {"mmlu-val", "arc-challenge"}
    assert all("LLaMA3-8B-Instruct" in r["method"] for r in rows)
    assert len(rows) == 16
    assert paper_model("/models/Llama-2-7b-chat-hf") == "LLaMA2-7B-Chat"
    assert paper_model("smollm2-135m-instruct") is None
    assert len(reference_rows("craft-table2", ["mmlu-val"], "smollm2")) == 14  # both models
    with pytest.raises(ConfigError, match="none of the test sets"):
        reference_rows("grait-table2", ["wf-id"])
    with pytest.raises(ConfigError, match="no reference table"):
        load_reference("grait-table9")


def test_rait_table_prints_a_reference_with_its_flags(capsys):
    assert main(["table", "--reference", "grait-table2"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "LLaMA3-8B-Instruct · grait |" in x)
    assert "| 50.4 | 6.9 |" in line and "| 36.4 |" in line
    misprint = next(x for x in out.splitlines() if "LLaMA2-7B-Chat · init-refuse |" in x)
    assert "3.9 †" in misprint
    assert "no intervals" in out


def test_every_reference_row_names_a_registered_method_or_baseline():
    from rait.methods import row_order

    for name in reference_names():
        for row in load_reference(name)["rows"]:
            assert row["method"] in row_order(), (name, row["printed_method"])
    grait = load_reference("grait-table2")["rows"]
    printed = {r["printed_method"] for r in grait if r["method"] == "cor-rait"}
    assert printed == {"R-Tuning"}  # GRAIT prints its Cor-RAIT baseline as R-Tuning


def test_two_references_keep_their_own_printed_order():
    from rait.results import _row_order

    rows = reference_rows("grait-table2", ["mmlu-val"], "meta-llama/Meta-Llama-3-8B-Instruct")
    rows += reference_rows("craft-table2", ["mmlu-val"], "meta-llama/Meta-Llama-3-8B-Instruct")
    order = _row_order(rows)
    assert order[0] == "grait-table2 · LLaMA3-8B-Instruct · init-basic"
    assert order[8] == "craft-table2 · LLaMA3-8B-Instruct · init-basic"
    assert all(m.startswith("grait-table2") for m in order[:8])


def test_rows_beside_results_take_their_test_sets_and_model():
    from rait.references import check_reference_names, rows_beside

    results = [{"test_set": "arc-challenge", "model": "meta-llama/Meta-Llama-3-8B-Instruct"}]
    rows = rows_beside(["grait-table2", "craft-table2"], results)
    assert {r["test_set"] for r in rows} == {"arc-challenge"}
    assert len(rows) == 8 + 7 and all("LLaMA3-8B-Instruct" in r["method"] for r in rows)
    assert len(rows_beside(["craft-table2"], [])) == 56  # no results: the whole table
    with pytest.raises(ConfigError, match="report: no reference table 'x'"):
        check_reference_names(["craft-table2", "x"], "report")
