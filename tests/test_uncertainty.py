"""Paired bootstrap intervals (rait.uncertainty): properties, and two independent oracles (the
exact binomial distribution of a resampled rate, and scipy.stats.bootstrap on question indices)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.errors import ConfigError
from rait.metrics import MetricError, knowledge_quadrants, rates, ths
from rait.uncertainty import (
    BootstrapConfig,
    intervals,
    p_value,
    paired_difference,
    percentile_interval,
    significant,
)

VERDICT = st.sampled_from(["correct", "wrong", "refused"])
FAST = BootstrapConfig(n_resamples=2000)


def _pairs(min_size=1, max_size=60):
    """(method verdicts, base verdicts) on the same questions."""
    return st.lists(st.tuples(VERDICT, VERDICT), min_size=min_size, max_size=max_size).map(
        lambda pairs: ([a for a, _ in pairs], [b for _, b in pairs])
    )


def _contains(interval, point):
    return interval["low"] - 1e-12 <= point <= interval["high"] + 1e-12


@settings(max_examples=60, deadline=None)
@given(_pairs())
def test_every_rate_interval_contains_its_point_estimate(data):
    """The bootstrap distribution of a rate is Binomial(n, p)/n, whose median is p itself when
    np is an integer (it is: a count over n), so the percentile interval always contains it."""
    verdicts, base = data
    ci = intervals(verdicts, base, FAST)
    r = rates(verdicts)
    for key in ("pc", "pw", "pr"):
        assert _contains(ci[key], getattr(r, key))
    q = knowledge_quadrants(verdicts, base)
    for key in ("refusal_precision", "refusal_recall"):
        if q[key] is not None and ci[key] is not None:
            assert _contains(ci[key], q[key]), (key, q[key], ci[key])


@settings(max_examples=40, deadline=None)
@given(_pairs(min_size=20, max_size=80))
def test_ths_interval_contains_its_point_estimate(data):
    verdicts, base = data
    r, b = rates(verdicts), rates(base)
    point = ths(r.pc, r.pw, b.pc, b.pw)
    ci = intervals(verdicts, base, FAST)
    if point is None:  # the base model makes no error: undefined in every redraw too
        assert ci["ths"] is None
    else:
        assert _contains(ci["ths"], point), (point, ci["ths"])


@settings(max_examples=30, deadline=None)
@given(_pairs(min_size=5, max_size=30))
def test_intervals_shrink_as_n_grows(data):
    """The same shares on 9× the questions: the bootstrap spread scales as 1/√n, so the width
    falls to about a third; only an interval that is already a point stays one. (THS is
    checked where no small redraw was undefined: with one or two base errors in five
    questions, the redraws that define THS are a biased few.)"""
    verdicts, base = data
    small = intervals(verdicts, base, FAST)
    large = intervals(verdicts * 9, base * 9, FAST)
    for key in ("pc", "pw", "pr", "ths"):
        if small[key] is None or small[key]["undefined"]:
            continue
        w_small = small[key]["high"] - small[key]["low"]
        w_large = large[key]["high"] - large[key]["low"]
        if w_small == 0:
            assert w_large == 0
        else:
            assert w_large < w_small, (key, w_small, w_large)


@given(st.sampled_from(["correct", "wrong", "refused"]), st.integers(1, 200))
def test_a_test_set_where_every_verdict_agrees_has_a_point_interval(verdict, n):
    ci = intervals([verdict] * n, cfg=FAST)
    for key in ("pc", "pw", "pr"):
        expected = 1.0 if key == {"correct": "pc", "wrong": "pw", "refused": "pr"}[verdict] else 0.0
        assert ci[key]["low"] == ci[key]["high"] == expected


@settings(max_examples=30, deadline=None)
@given(_pairs(min_size=2, max_size=60))
def test_a_method_against_itself_differs_by_exactly_zero(data):
    verdicts, base = data
    diff = paired_difference(verdicts, verdicts, base, FAST)
    for key in ("pc", "pw", "pr"):
        assert diff[key]["delta"] == 0
        assert diff[key]["interval"]["low"] == diff[key]["interval"]["high"] == 0
        assert diff[key]["p_value"] == 1.0
        assert not significant(diff[key])


def test_the_bootstrap_of_a_rate_is_the_exact_binomial():
    """Independent oracle: resampling n questions with replacement makes the count of correct
    answers Binomial(n, Pc); its exact 2.5 % and 97.5 % quantiles against ours. With B =
    20,000 redraws a quantile's Monte Carlo error is far below one step 1/n; linear
    interpolation between atoms can move ours by at most one step."""
    from scipy.stats import binom

    n, correct = 100, 37
    verdicts = ["correct"] * correct + ["wrong"] * (n - correct)
    ci = intervals(verdicts, cfg=BootstrapConfig(n_resamples=20_000))
    low, high = binom.ppf([0.025, 0.975], n, correct / n) / n
    assert abs(ci["pc"]["low"] - low) <= 1 / n
    assert abs(ci["pc"]["high"] - high) <= 1 / n


def test_paired_ths_difference_agrees_with_scipy_bootstrap_on_question_indices():
    """Independent oracle: scipy.stats.bootstrap resampling question indices (paired=True)
    with the statistic computed from the three verdict lists, against rait's multinomial
    redraw of the verdict tuples. Both estimate the same percentiles; with 20,000 redraws each
    the Monte Carlo standard error of a 2.5 % quantile of ΔTHS (spread ~0.05 here) is about
    0.05·√(0.025·0.975/20000)/φ(1.96) ≈ 0.0006, so 0.01 is over ten standard errors."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    n = 150
    base = rng.choice(["correct", "wrong"], n, p=[0.3, 0.7])
    a = np.where(base == "correct", rng.choice(["correct", "refused"], n, p=[0.8, 0.2]), "x")
    a = np.where(a == "x", rng.choice(["wrong", "refused", "correct"], n, p=[0.4, 0.5, 0.1]), a)
    b = np.where(base == "correct", "correct", rng.choice(["wrong", "correct"], n, p=[0.8, 0.2]))

    def delta(ia, axis=-1):
        idx = ia.astype(int)

        def one(verdicts):
            v = verdicts[idx]
            pc, pw = (v == "correct").mean(axis=-1), (v == "wrong").mean(axis=-1)
            return pc, pw

        (pca, pwa), (pcb, pwb), (pc0, pw0) = one(a), one(b), one(base)
        return (pca * pw0 - pwa * pc0) / pw0 - (pcb * pw0 - pwb * pc0) / pw0

    ours = paired_difference(list(a), list(b), list(base), BootstrapConfig(n_resamples=20_000))
    theirs = bootstrap(
        (np.arange(n),),
        delta,
        vectorized=True,
        n_resamples=20_000,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    assert abs(ours["ths"]["interval"]["low"] - theirs.low) < 0.01
    assert abs(ours["ths"]["interval"]["high"] - theirs.high) < 0.01
    assert ours["ths"]["delta"] == pytest.approx(float(delta(np.arange(n))), abs=1e-12)


def test_a_clear_difference_is_significant_and_a_coin_flip_is_not():
    base = ["wrong"] * 70 + ["correct"] * 30
    refuses_wrongs = ["refused"] * 70 + ["correct"] * 30  # a perfect refusal-aware model
    diff = paired_difference(refuses_wrongs, base, base, FAST)
    assert diff["ths"]["delta"] == pytest.approx(0.3)
    assert significant(diff["ths"]) and diff["ths"]["p_value"] < 0.001
    rng = np.random.default_rng(0)
    flip = list(rng.choice(["correct", "wrong"], 100))
    other = list(rng.choice(["correct", "wrong"], 100))
    noise = paired_difference(flip, other, ["wrong"] * 50 + ["correct"] * 50, FAST)
    assert noise["pc"]["p_value"] > 0.05 or abs(noise["pc"]["delta"]) > 0.1


def test_p_value_is_two_sided_and_never_zero():
    assert p_value(np.ones(999)) == pytest.approx(1 / 1000)  # (1 + 2·0) / (B + 1)
    assert p_value(np.zeros(999)) == 1.0
    assert p_value(np.r_[np.ones(900), -np.ones(99)]) == pytest.approx(199 / 1000)
    assert p_value(np.full(10, np.nan)) is None


def test_undefined_redraws_are_left_out_and_counted():
    values = np.r_[np.full(10, np.nan), np.linspace(0, 1, 90)]
    interval = percentile_interval(values, 0.9)
    assert interval["undefined"] == 10
    assert interval["low"] == pytest.approx(0.05) and interval["high"] == pytest.approx(0.95)
    assert percentile_interval(np.full(5, np.nan), 0.95) is None


def test_the_same_seed_gives_the_same_interval_and_another_seed_a_close_one():
    verdicts = ["correct"] * 30 + ["wrong"] * 50 + ["refused"] * 20
    base = ["correct"] * 25 + ["wrong"] * 75
    a = intervals(verdicts, base, BootstrapConfig(seed=1))
    assert a == intervals(verdicts, base, BootstrapConfig(seed=1))
    b = intervals(verdicts, base, BootstrapConfig(seed=2))
    assert abs(a["ths"]["low"] - b["ths"]["low"]) < 0.02


def test_bad_inputs_and_settings_are_clear_errors():
    with pytest.raises(MetricError, match="same questions"):
        paired_difference(["correct"], ["correct", "wrong"], ["wrong"])
    with pytest.raises(MetricError, match="unknown verdict"):
        intervals(["maybe"])
    with pytest.raises(ConfigError, match="confidence"):
        intervals(["correct"], cfg=BootstrapConfig(confidence=1.0))
    with pytest.raises(ConfigError, match="n_resamples"):
        intervals(["correct"], cfg=BootstrapConfig(n_resamples=10))
    with pytest.raises(ConfigError, match="n_resamples"):
        intervals(["correct"], cfg=BootstrapConfig(n_resamples=10**9))
    with pytest.raises(ConfigError, match="seed"):
        intervals(["correct"], cfg=BootstrapConfig(seed=-1))
    with pytest.raises(ConfigError, match="confidence"):
        intervals(["correct"], cfg=BootstrapConfig(confidence="high"))


def test_a_wider_confidence_gives_a_wider_interval():
    verdicts = ["correct"] * 40 + ["wrong"] * 60
    narrow = intervals(verdicts, cfg=BootstrapConfig(confidence=0.8))["pc"]
    wide = intervals(verdicts, cfg=BootstrapConfig(confidence=0.99))["pc"]
    assert wide["low"] < narrow["low"] and wide["high"] > narrow["high"]
