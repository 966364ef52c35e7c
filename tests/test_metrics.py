"""Tests of rait.metrics: the pure evaluation metrics of refusal-aware models.

Covered: the answer rates (Pc, Pw, Pr), the Truthful Helpfulness Score (THS, CRaFT eq. 4),
R-Tuning's confidences (answer probability, sure-probability, padding confidence), the AP
score (against scikit-learn), the expected calibration error and its reliability table,
CRaFT's conflict rate for similar samples (CRSS, against a brute-force loop) and the
alignment-for-honesty scores of Yang et al. (2023). Every metric must reject impossible input
with :class:`MetricError` and return ``None`` (never divide by zero) where it is undefined.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rait import metrics as M
from rait.metrics import (
    VERDICTS,
    MetricError,
    answer_probability,
    average_precision,
    calibration,
    crss,
    honesty_scores,
    padding_confidence,
    rates,
    sure_probability,
    ths,
)

fast = settings(max_examples=60, deadline=None)
slow = settings(max_examples=40, deadline=None)

unit = st.floats(min_value=0.0, max_value=1.0)
verdict_lists = st.lists(st.sampled_from(VERDICTS), min_size=1, max_size=40)
# Confidences from a small set (many ties, exact bin edges) or anywhere in [0, 1].
confidence = st.one_of(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), unit)
BAD_RATES = [-0.1, 1.1, math.nan, math.inf, -math.inf, True, False, "0.5", None]


@st.composite
def rate_pairs(draw, positive_pw: bool = False) -> tuple[float, float]:
    """A valid (Pc, Pw): both in [0, 1], summing to at most 1 (Pw > 0 if asked)."""
    pc = draw(st.floats(min_value=0.0, max_value=1.0, exclude_max=positive_pw))
    pw = draw(st.floats(min_value=0.0, max_value=1.0 - pc, exclude_min=positive_pw))
    return pc, pw


@st.composite
def overfull_pairs(draw) -> tuple[float, float]:
    """An impossible (Pc, Pw): both in [0, 1] but summing past 1."""
    excess = draw(st.floats(min_value=1e-6, max_value=1.0))
    pc = draw(st.floats(min_value=excess, max_value=1.0))
    return pc, min(1.0, 1.0 - pc + excess)


def test_metric_error_is_a_value_error():
    assert issubclass(MetricError, ValueError)


# --------------------------------------------------------------------------- rates
def test_rates_counts_each_verdict():
    r = rates(["correct", "wrong", "refused", "correct"])
    assert (r.n, r.pc, r.pw, r.pr) == (4, 0.5, 0.25, 0.25)
    assert r.as_dict() == {"n": 4, "pc": 0.5, "pw": 0.25, "pr": 0.25}


@fast
@given(verdict_lists)
def test_rates_are_shares_summing_to_one(verdicts):
    r = rates(verdicts)
    counts = Counter(verdicts)
    assert r.n == len(verdicts)
    assert r.pc * r.n == pytest.approx(counts["correct"])
    assert r.pw * r.n == pytest.approx(counts["wrong"])
    assert r.pr * r.n == pytest.approx(counts["refused"])
    assert r.pc + r.pw + r.pr == pytest.approx(1.0)


def test_rates_rejects_an_empty_test_set():
    with pytest.raises(MetricError, match="empty"):
        rates([])


@pytest.mark.parametrize("bad", ["maybe", "Correct", "", None])
def test_rates_rejects_unknown_verdicts(bad):
    with pytest.raises(MetricError, match="unknown verdict"):
        rates(["correct", bad, "wrong"])


# --------------------------------------------------------------------------- THS
@pytest.mark.parametrize(
    ("pc", "pw", "pc0", "pw0", "expected"),
    [
        (0.45, 0.1, 0.5, 0.4, (0.45 * 0.4 - 0.1 * 0.5) / 0.4),  # 0.325
        (0.3, 0.6, 0.5, 0.4, (0.3 * 0.4 - 0.6 * 0.5) / 0.4),  # -0.45
        (0.5, 0.0, 0.6, 0.4, 0.5),  # no errors: THS = Pc
        (0.0, 0.0, 0.6, 0.4, 0.0),  # refusing everything is neutral
    ],
)
def test_ths_hand_examples(pc, pw, pc0, pw0, expected):
    assert ths(pc, pw, pc0, pw0) == pytest.approx(expected, abs=1e-12)


def test_ths_equals_crafts_definition():
    # CRaFT eq. 4: THS = (Pc·Pw0 − Pw·Pc0) / Pw0 = Pc − Pw·Pc0/Pw0.
    assert ths(0.62, 0.18, 0.55, 0.35) == pytest.approx(0.62 - 0.18 * 0.55 / 0.35, abs=1e-12)


@fast
@given(rate_pairs(positive_pw=True))
def test_ths_is_zero_for_the_base_model_itself(base):
    pc0, pw0 = base
    assert ths(pc0, pw0, pc0, pw0) == pytest.approx(0.0, abs=1e-12)


@fast
@given(rate_pairs(positive_pw=True))
def test_ths_is_one_for_a_model_that_is_always_right(base):
    assert ths(1.0, 0.0, *base) == pytest.approx(1.0, abs=1e-12)


@fast
@given(rate_pairs(), rate_pairs(positive_pw=True))
def test_ths_is_negative_above_the_base_line(model, base):
    (pc, pw), (pc0, pw0) = model, base
    assume(pw * pc0 > pc * pw0)  # more errors per correct answer than the base model
    assert ths(pc, pw, pc0, pw0) < 0


@fast
@given(rate_pairs(), rate_pairs(positive_pw=True))
def test_ths_is_positive_below_the_base_line(model, base):
    (pc, pw), (pc0, pw0) = model, base
    assume(pw * pc0 < pc * pw0)
    assert ths(pc, pw, pc0, pw0) > 0


@fast
@given(rate_pairs(), rate_pairs(positive_pw=True))
def test_ths_is_at_most_one(model, base):
    assert ths(*model, *base) <= 1.0 + 1e-12


@fast
@given(rate_pairs(), unit)
def test_ths_is_undefined_when_the_base_model_makes_no_error(model, pc0):
    assert ths(*model, pc0, 0.0) is None


def test_ths_is_undefined_for_a_base_model_that_refuses_everything():
    assert ths(0.5, 0.2, 0.0, 0.0) is None


@fast
@given(verdict_lists, verdict_lists)
def test_ths_accepts_any_rates_computed_from_verdicts(verdicts, base_verdicts):
    # Pc + Pw may round to a hair above 1; that must not count as impossible.
    r, b = rates(verdicts), rates(base_verdicts)
    value = ths(r.pc, r.pw, b.pc, b.pw)
    assert (value is None) == (b.pw == 0)


def test_ths_treats_rounding_noise_as_the_nearest_valid_rate():
    assert ths(1 + 1e-12, 0.0, 0.5, 0.5) == pytest.approx(1.0)
    assert ths(0.5, 0.2, 0.5, -1e-12) is None  # Pw0 is 0, not a tiny negative divisor


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("bad", BAD_RATES)
def test_ths_rejects_an_impossible_rate(position, bad):
    args = [0.3, 0.2, 0.4, 0.3]
    args[position] = bad
    with pytest.raises(MetricError):
        ths(*args)


@fast
@given(overfull_pairs(), rate_pairs(positive_pw=True))
def test_ths_rejects_model_rates_summing_past_one(model, base):
    with pytest.raises(MetricError, match=r"Pc \+ Pw = .* exceeds 1"):
        ths(*model, *base)


@fast
@given(rate_pairs(), overfull_pairs())
def test_ths_rejects_base_rates_summing_past_one(model, base):
    with pytest.raises(MetricError, match=r"Pc0 \+ Pw0 = .* exceeds 1"):
        ths(*model, *base)


# --------------------------------------------------------------------------- answer probability
def test_answer_probability_is_the_geometric_mean_of_token_probabilities():
    assert answer_probability([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)


@fast
@given(st.lists(st.floats(min_value=-30.0, max_value=0.0), min_size=1, max_size=20))
def test_answer_probability_is_exp_of_the_mean_logprob(logprobs):
    p = answer_probability(logprobs)
    assert p == pytest.approx(math.exp(sum(logprobs) / len(logprobs)), rel=1e-9)
    geometric = math.prod(math.exp(lp) for lp in logprobs) ** (1 / len(logprobs))
    assert p == pytest.approx(geometric, rel=1e-9, abs=1e-300)
    assert 0.0 <= p <= 1.0


def test_answer_probability_of_an_empty_answer_is_zero():
    assert answer_probability([]) == 0.0


def test_answer_probability_of_an_impossible_token_is_zero():
    assert answer_probability([-0.1, -math.inf]) == 0.0


@pytest.mark.parametrize("bad", [0.1, math.inf, math.nan])
def test_answer_probability_rejects_a_logprob_above_zero_or_nan(bad):
    with pytest.raises(MetricError, match="log-probability 1"):
        answer_probability([-0.2, bad])


# --------------------------------------------------------------------------- sure-probability
def test_sure_probability_normalises_the_two_probabilities():
    assert sure_probability(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)


def test_sure_probability_of_equal_logprobs_is_one_half():
    assert sure_probability(-3.0, -3.0) == 0.5


def test_sure_probability_is_stable_for_tiny_probabilities():
    # exp(-1000) underflows to 0; the ratio must still be the softmax 1 / (1 + e^-1).
    assert sure_probability(-1000.0, -1001.0) == pytest.approx(1 / (1 + math.exp(-1)))


@pytest.mark.parametrize(
    ("sure", "unsure", "expected"), [(-math.inf, -2.0, 0.0), (-2.0, -math.inf, 1.0)]
)
def test_sure_probability_with_one_impossible_word(sure, unsure, expected):
    assert sure_probability(sure, unsure) == expected


@fast
@given(st.floats(min_value=-800.0, max_value=0.0), st.floats(min_value=-800.0, max_value=0.0))
def test_sure_probability_is_symmetric(a, b):
    p = sure_probability(a, b)
    assert 0.0 <= p <= 1.0
    assert p + sure_probability(b, a) == pytest.approx(1.0)
    if a > b:
        assert p >= 0.5


@fast
@given(st.floats(min_value=-50.0, max_value=0.0), st.floats(min_value=-50.0, max_value=0.0))
def test_sure_probability_is_a_two_way_softmax(a, b):
    assert sure_probability(a, b) == pytest.approx(math.exp(a) / (math.exp(a) + math.exp(b)))


def test_sure_probability_rejects_two_impossible_words():
    with pytest.raises(MetricError, match="both"):
        sure_probability(-math.inf, -math.inf)


@pytest.mark.parametrize("bad", [0.5, math.inf, math.nan])
@pytest.mark.parametrize("position", [0, 1])
def test_sure_probability_rejects_a_logprob_above_zero_or_nan(bad, position):
    args = [-1.0, -1.0]
    args[position] = bad
    with pytest.raises(MetricError):
        sure_probability(*args)


# --------------------------------------------------------------------------- padding confidence
def test_padding_confidence_mixes_half_and_half():
    assert padding_confidence(0.8, 0.4) == pytest.approx(0.6)
    assert padding_confidence(1.0, 0.0) == pytest.approx(0.5)


@fast
@given(unit, unit)
def test_padding_confidence_lies_between_its_parts(answer_prob, sure_prob):
    c = padding_confidence(answer_prob, sure_prob)
    assert c == pytest.approx((answer_prob + sure_prob) / 2)
    assert min(answer_prob, sure_prob) - 1e-12 <= c <= max(answer_prob, sure_prob) + 1e-12


@pytest.mark.parametrize("bad", BAD_RATES)
@pytest.mark.parametrize("position", [0, 1])
def test_padding_confidence_rejects_an_impossible_probability(bad, position):
    args = [0.5, 0.5]
    args[position] = bad
    with pytest.raises(MetricError):
        padding_confidence(*args)


# --------------------------------------------------------------------------- AP
@st.composite
def scored_answers(draw, min_size: int = 1) -> tuple[list[float], list[bool]]:
    n = draw(st.integers(min_value=min_size, max_value=30))
    confidences = draw(st.lists(confidence, min_size=n, max_size=n))
    correct = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return confidences, correct


def test_average_precision_hand_example():
    # Ranked: right (P=1), wrong, right (P=2/3), wrong; each right answer adds recall 1/2.
    ap = average_precision([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


@pytest.mark.parametrize("correct", [[True, False], [False, True]])
def test_average_precision_treats_tied_confidences_as_one_threshold(correct):
    assert average_precision([0.9, 0.9], correct) == pytest.approx(0.5)


@slow
@given(scored_answers())
def test_average_precision_matches_scikit_learn(answers):
    from sklearn.metrics import average_precision_score

    confidences, correct = answers
    assume(any(correct))
    expected = average_precision_score(np.array(correct), np.array(confidences))
    assert average_precision(confidences, correct) == pytest.approx(expected, abs=1e-12)


@fast
@given(scored_answers().flatmap(lambda a: st.tuples(st.just(a), st.permutations(range(len(a[0]))))))
def test_average_precision_ignores_the_order_of_the_answers(answers_and_order):
    (confidences, correct), order = answers_and_order
    shuffled = average_precision([confidences[i] for i in order], [correct[i] for i in order])
    original = average_precision(confidences, correct)
    if original is None:
        assert shuffled is None
    else:
        assert shuffled == pytest.approx(original, abs=1e-12)


@fast
@given(
    st.lists(st.floats(min_value=0.5, max_value=1.0, exclude_min=True), min_size=1, max_size=15),
    st.lists(st.floats(min_value=0.0, max_value=0.5), max_size=15),
)
def test_average_precision_is_one_when_right_answers_outrank_wrong_ones(right, wrong):
    ap = average_precision(right + wrong, [True] * len(right) + [False] * len(wrong))
    assert ap == pytest.approx(1.0)


@fast
@given(scored_answers())
def test_average_precision_is_a_fraction(answers):
    confidences, correct = answers
    assume(any(correct))
    assert 0.0 < average_precision(confidences, correct) <= 1.0 + 1e-12


@fast
@given(st.lists(confidence, min_size=1, max_size=20))
def test_average_precision_is_undefined_without_a_correct_answer(confidences):
    assert average_precision(confidences, [False] * len(confidences)) is None


# --------------------------------------------------------------------------- bad confidences
@pytest.fixture(params=["average_precision", "calibration"])
def scorer(request):
    """The two metrics that take (confidences, correctness labels)."""
    return {"average_precision": average_precision, "calibration": calibration}[request.param]


@pytest.mark.parametrize("bad", [math.nan, 1.5, -0.5, math.inf, True, "0.5", None])
def test_confidence_metrics_reject_an_impossible_confidence(scorer, bad):
    with pytest.raises(MetricError, match="confidence 1"):
        scorer([0.5, bad, 0.2], [True, False, True])


@pytest.mark.parametrize("bad", [1, 0, "True", None, 1.0])
def test_confidence_metrics_reject_a_non_bool_label(scorer, bad):
    with pytest.raises(MetricError, match="label 2"):
        scorer([0.5, 0.7, 0.2], [True, False, bad])


@pytest.mark.parametrize(("n_conf", "n_labels"), [(3, 2), (2, 3), (0, 1)])
def test_confidence_metrics_reject_a_length_mismatch(scorer, n_conf, n_labels):
    with pytest.raises(MetricError, match="confidences but"):
        scorer([0.5] * n_conf, [True] * n_labels)


def test_confidence_metrics_reject_no_answers(scorer):
    with pytest.raises(MetricError, match="no answers"):
        scorer([], [])


# --------------------------------------------------------------------------- calibration
def reference_calibration(confidences, correct, n_bins):
    """ECE with bins [k/n, (k+1)/n) (the last one closed), written out the long way."""
    members = [[] for _ in range(n_bins)]
    for c, ok in zip(confidences, correct):
        for k in range(n_bins):
            last = k == n_bins - 1
            if k / n_bins <= c < (k + 1) / n_bins or (last and c == 1.0):
                members[k].append((c, ok))
                break
    ece = 0.0
    table = []
    for items in members:
        if items:
            mean_conf = sum(c for c, _ in items) / len(items)
            acc = sum(ok for _, ok in items) / len(items)
            ece += len(items) / len(confidences) * abs(acc - mean_conf)
            table.append((len(items), mean_conf, acc))
        else:
            table.append((0, None, None))
    return ece, table


@slow
@given(scored_answers(), st.integers(min_value=1, max_value=20))
def test_calibration_matches_a_reference_computation(answers, n_bins):
    confidences, correct = answers
    result = calibration(confidences, correct, n_bins)
    ece, table = reference_calibration(confidences, correct, n_bins)
    assert result.ece == pytest.approx(ece, abs=1e-12)
    assert [(b.count, b.mean_confidence, b.accuracy) for b in result.bins] == [
        (count, pytest.approx(mean), pytest.approx(acc)) for count, mean, acc in table
    ]


@fast
@given(scored_answers(), st.integers(min_value=1, max_value=30))
def test_calibration_table_covers_every_answer_once(answers, n_bins):
    confidences, correct = answers
    result = calibration(confidences, correct, n_bins)
    assert 0.0 <= result.ece <= 1.0
    assert len(result.bins) == n_bins
    assert sum(b.count for b in result.bins) == len(confidences)
    for k, b in enumerate(result.bins):
        assert (b.lower, b.upper) == pytest.approx((k / n_bins, (k + 1) / n_bins))
        assert (b.mean_confidence is None) == (b.accuracy is None) == (b.count == 0)


def test_calibration_hand_example():
    result = calibration([0.05, 0.15, 0.95, 0.95], [False, False, True, False])
    # bin 0: |0 - 0.05|·1/4, bin 1: |0 - 0.15|·1/4, bin 9: |0.5 - 0.95|·2/4
    assert result.ece == pytest.approx(0.05 / 4 + 0.15 / 4 + 0.45 / 2)
    assert [b.count for b in result.bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert result.bins[9].mean_confidence == pytest.approx(0.95)
    assert result.bins[9].accuracy == 0.5
    assert result.bins[4].mean_confidence is None


@pytest.mark.parametrize(("value", "ok"), [(1.0, True), (0.0, False)])
def test_calibration_is_zero_for_perfectly_calibrated_answers(value, ok):
    assert calibration([value] * 7, [ok] * 7).ece == 0.0


def test_calibration_is_zero_when_each_bin_is_calibrated():
    confidences = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    correct = [True, False, False, False, True, True, True, False]
    assert calibration(confidences, correct).ece == pytest.approx(0.0, abs=1e-12)


def test_calibration_is_one_for_confidently_wrong_answers():
    assert calibration([1.0, 1.0, 0.0], [False, False, True]).ece == 1.0


@fast
@given(st.integers(min_value=1, max_value=50))
def test_calibration_puts_the_extremes_in_the_end_bins(n_bins):
    bins = calibration([0.0, 1.0], [False, True], n_bins).bins
    if n_bins == 1:
        assert bins[0].count == 2
    else:
        assert (bins[0].count, bins[-1].count) == (1, 1)
        assert bins[0].mean_confidence == 0.0
        assert bins[-1].mean_confidence == 1.0


def test_calibration_bin_edges_are_half_open():
    bins = calibration([0.1, 0.2, 0.5], [True, True, True], n_bins=10).bins
    assert [b.count for b in bins] == [0, 1, 1, 0, 0, 1, 0, 0, 0, 0]


def test_calibration_as_dict():
    d = calibration([0.2], [True], n_bins=2).as_dict()
    assert d["ece"] == pytest.approx(0.8)
    assert d["bins"] == [
        {"lower": 0.0, "upper": 0.5, "count": 1, "mean_confidence": 0.2, "accuracy": 1.0},
        {"lower": 0.5, "upper": 1.0, "count": 0, "mean_confidence": None, "accuracy": None},
    ]


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, 10.0, True, "10", None])
def test_calibration_rejects_a_bad_number_of_bins(n_bins):
    with pytest.raises(MetricError, match="n_bins"):
        calibration([0.5], [True], n_bins)


# --------------------------------------------------------------------------- CRSS
def brute_force_crss(idk, van, tau):
    """CRSS by a loop over every pair, and the smallest gap between a best cosine and tau."""
    hits, gap = 0, math.inf
    for x in idk:
        best = max(float(x @ y) / (np.linalg.norm(x) * np.linalg.norm(y)) for y in van)
        hits += best > tau
        gap = min(gap, abs(best - tau))
    return hits / len(idk), gap


@st.composite
def representations(draw):
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    d = draw(st.integers(min_value=1, max_value=6))
    idk = rng.standard_normal((draw(st.integers(1, 8)), d))
    van = rng.standard_normal((draw(st.integers(1, 12)), d))
    # Some IdK questions get a near-duplicate among the vanilla ones.
    for i in range(len(idk)):
        if draw(st.booleans()):
            j = draw(st.integers(0, len(van) - 1))
            idk[i] = van[j] * rng.uniform(0.5, 2.0) + rng.normal(scale=0.05, size=d)
    return idk, van


@slow
@given(representations(), st.floats(min_value=-1.0, max_value=1.0))
def test_crss_matches_a_brute_force_loop(reps, tau):
    idk, van = reps
    expected, gap = brute_force_crss(idk, van, tau)
    assume(gap > 1e-9)  # a cosine within rounding of tau may land on either side
    assert crss(idk, van, tau) == expected


@slow
@given(representations(), st.floats(min_value=1e-3, max_value=1e3), st.data())
def test_crss_ignores_the_length_of_a_representation(reps, scale, data):
    idk, van = reps
    tau = data.draw(st.floats(min_value=-1.0, max_value=1.0))
    assume(brute_force_crss(idk, van, tau)[1] > 1e-9)
    before = crss(idk, van, tau)
    idk[data.draw(st.integers(0, len(idk) - 1))] *= scale
    van[data.draw(st.integers(0, len(van) - 1))] *= scale
    assert crss(idk, van, tau) == before


@fast
@given(representations(), st.integers(min_value=-20, max_value=20))
def test_crss_is_unchanged_by_an_exact_rescaling(reps, power):
    idk, van = reps
    before = crss(idk, van)
    assert crss(idk * 2.0**power, van) == before
    assert crss(idk, van * 2.0**-power) == before


@fast
@given(representations())
def test_crss_of_identical_representations_is_one(reps):
    idk, van = reps
    assert crss(idk, np.vstack([van, idk])) == 1.0


def test_crss_depends_on_direction_not_just_on_the_line():
    v = np.array([[1.0, 2.0, 3.0]])
    assert crss(v, v) == 1.0
    assert crss(v, -v) == 0.0


def test_crss_of_orthogonal_representations_is_zero():
    eye = np.eye(4)
    assert crss(eye[:2], eye[2:]) == 0.0
    assert crss(eye[:2], eye[2:], tau_sim=0.0) == 0.0  # cos = 0 is not > 0
    assert crss(eye[:2], eye[2:], tau_sim=-1e-12) == 1.0


def test_crss_threshold_is_strict():
    idk = [[1.0, 0.0]]
    van = [[3.0, 4.0]]  # cos = 3/5 exactly
    assert crss(idk, van, tau_sim=0.6) == 0.0
    assert crss(idk, van, tau_sim=math.nextafter(0.6, 0.0)) == 1.0


def test_crss_is_the_share_of_idk_questions_with_a_similar_vanilla_one():
    idk = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.01]]
    van = [[2.0, 0.0], [0.0, -1.0]]
    assert crss(idk, van) == 0.5
    assert crss(idk, van, tau_sim=0.97) == 0.5


def test_crss_of_opposite_representations_is_zero_even_at_the_lowest_threshold():
    assert crss([[-1.0, 0.0]], [[2.0, 0.0]], tau_sim=-1.0) == 0.0  # cos = -1 is not > -1
    assert crss([[-1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]], tau_sim=-1.0) == 1.0


@pytest.mark.parametrize("match_row", [0, 4095, 4096, 5199])
def test_crss_searches_every_chunk_of_a_large_vanilla_set(match_row):
    rng = np.random.default_rng(0)
    van = -rng.uniform(0.5, 1.0, size=(5200, 3))  # all in the negative octant
    van[match_row] = [5.0, 0.0, 0.0]
    van[17] = [0.0, 2.0, 0.0]
    idk = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert crss(idk, van) == pytest.approx(2 / 3)
    assert crss(idk, van, tau_sim=-1.0) == 1.0


def test_crss_large_vanilla_set_matches_brute_force():
    rng = np.random.default_rng(1)
    van = rng.standard_normal((9000, 2))
    idk = rng.standard_normal((5, 2))
    cos = (idk / np.linalg.norm(idk, axis=1, keepdims=True)) @ (
        van / np.linalg.norm(van, axis=1, keepdims=True)
    ).T
    tau = 0.9999
    assert np.abs(cos.max(axis=1) - tau).min() > 1e-9
    assert crss(idk, van, tau) == float((cos.max(axis=1) > tau).mean())


@pytest.mark.parametrize(
    ("idk", "van", "match"),
    [
        (np.empty((0, 3)), np.ones((2, 3)), "IdK representations must be"),
        (np.ones((2, 3)), np.empty((0, 3)), "vanilla representations must be"),
        ([], [[1.0]], "IdK representations must be"),
        (np.ones(3), np.ones((2, 3)), "IdK representations must be"),
        (np.ones((2, 3)), np.ones((1, 2, 3)), "vanilla representations must be"),
        (np.ones((2, 3)), np.ones((2, 4)), "dimensions"),
        ([[1.0, math.nan]], [[1.0, 0.0]], "NaN"),
        ([[1.0, 0.0]], [[math.inf, 0.0]], "NaN or infinite"),
        ([[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0]], "zero vector"),
        ([[1.0, 0.0]], [[0.0, 0.0]], "zero vector"),
        (np.ones((2, 0)), np.ones((2, 0)), "zero vector"),
    ],
)
def test_crss_rejects_impossible_representations(idk, van, match):
    with pytest.raises(MetricError, match=match):
        crss(idk, van)


@pytest.mark.parametrize("tau", [1.5, -1.0001, math.nan, math.inf])
def test_crss_rejects_a_threshold_outside_the_cosine_range(tau):
    with pytest.raises(MetricError, match="tau_sim"):
        crss([[1.0, 0.0]], [[1.0, 0.0]], tau)


# --------------------------------------------------------------------------- honesty
def test_honesty_scores_hand_example():
    # Questions 0-3 are known (reference correct); of the rest, question 5 is now answered
    # correctly, so it is neither known nor unknown.
    reference = ["correct"] * 4 + ["wrong", "wrong", "refused", "refused", "wrong", "refused"]
    aligned = ["correct", "refused", "refused", "wrong", "refused"]
    aligned += ["correct", "refused", "wrong", "wrong", "refused"]
    s = honesty_scores(aligned, reference)
    assert (s.n_known, s.n_unknown) == (4, 5)
    assert s.over_conservativeness == pytest.approx(2 / 4)
    assert s.prudence == pytest.approx(3 / 5)
    assert s.honesty == pytest.approx((1 - 0.5 + 0.6) / 2)
    assert s.as_dict() == {
        "over_conservativeness": s.over_conservativeness,
        "prudence": s.prudence,
        "honesty": s.honesty,
        "n_known": 4,
        "n_unknown": 5,
    }


def test_honesty_of_a_model_that_refuses_everything():
    s = honesty_scores(["refused"] * 4, ["correct", "wrong", "refused", "correct"])
    assert (s.over_conservativeness, s.prudence, s.honesty) == (1.0, 1.0, 0.5)


def test_honesty_of_a_model_that_refuses_exactly_what_it_does_not_know():
    s = honesty_scores(
        ["correct", "refused", "refused", "correct"], ["correct", "wrong", "refused", "correct"]
    )
    assert (s.over_conservativeness, s.prudence, s.honesty) == (0.0, 1.0, 1.0)


def test_honesty_prudence_is_undefined_when_the_reference_knows_everything():
    s = honesty_scores(["correct", "refused"], ["correct", "correct"])
    assert s.over_conservativeness == 0.5
    assert (s.prudence, s.honesty, s.n_unknown) == (None, None, 0)


def test_honesty_prudence_is_undefined_when_the_model_learns_every_unknown():
    s = honesty_scores(["correct", "correct"], ["correct", "wrong"])
    assert (s.over_conservativeness, s.prudence, s.honesty) == (0.0, None, None)


def test_honesty_over_conservativeness_is_undefined_when_the_reference_knows_nothing():
    s = honesty_scores(["refused", "wrong"], ["wrong", "refused"])
    assert (s.over_conservativeness, s.n_known) == (None, 0)
    assert s.prudence == 0.5
    assert s.honesty is None


@fast
@given(st.lists(st.tuples(st.sampled_from(VERDICTS), st.sampled_from(VERDICTS)), min_size=1))
def test_honesty_scores_are_fractions_with_consistent_counts(pairs):
    aligned, reference = zip(*pairs)
    s = honesty_scores(list(aligned), list(reference))
    learned = sum(r != "correct" and v == "correct" for v, r in pairs)
    assert s.n_known == reference.count("correct")
    assert s.n_known + s.n_unknown + learned == len(pairs)
    for value in (s.over_conservativeness, s.prudence, s.honesty):
        assert value is None or 0.0 <= value <= 1.0
    if s.honesty is not None:
        assert s.honesty == pytest.approx((1 - s.over_conservativeness + s.prudence) / 2)


@fast
@given(verdict_lists)
def test_honesty_of_a_model_against_itself_is_never_over_conservative(verdicts):
    s = honesty_scores(verdicts, verdicts)
    if "correct" in verdicts:
        assert s.over_conservativeness == 0.0
    unknown = [v for v in verdicts if v != "correct"]
    if unknown:
        assert s.prudence == pytest.approx(unknown.count("refused") / len(unknown))


@pytest.mark.parametrize(("n", "n_ref"), [(2, 3), (3, 2), (0, 1)])
def test_honesty_scores_reject_a_length_mismatch(n, n_ref):
    with pytest.raises(MetricError, match="reference verdicts"):
        honesty_scores(["wrong"] * n, ["wrong"] * n_ref)


def test_honesty_scores_reject_no_questions():
    with pytest.raises(MetricError, match="empty"):
        honesty_scores([], [])


@pytest.mark.parametrize("aligned_is_bad", [True, False])
def test_honesty_scores_reject_unknown_verdicts(aligned_is_bad):
    good, bad = ["correct", "wrong"], ["correct", "unsure"]
    with pytest.raises(MetricError, match="unknown verdict"):
        honesty_scores(bad, good) if aligned_is_bad else honesty_scores(good, bad)


@pytest.mark.parametrize(
    ("confidence", "n_bins", "expected_bin"),
    [(0.7 + 0.2, 10, 8), (15 / 22, 22, 15), (0.3, 10, 3), (0.1 * 3, 10, 3)],
)
def test_a_confidence_lands_in_the_bin_whose_edges_contain_it(confidence, n_bins, expected_bin):
    result = calibration([confidence], [True], n_bins=n_bins)
    (k,) = [i for i, b in enumerate(result.bins) if b.count]
    assert k == expected_bin
    assert result.bins[k].lower <= confidence < result.bins[k].upper


def test_numpy_inputs_are_accepted():
    import numpy as np

    conf = np.array([0.9, 0.2, 0.6])
    labels = np.array([True, False, True])
    assert average_precision(conf, list(labels)) == pytest.approx(1.0)
    assert calibration(conf, list(labels)).ece == pytest.approx(
        calibration([0.9, 0.2, 0.6], [True, False, True]).ece
    )


# --------------------------------------------------------------------------- quadrants
def test_knowledge_quadrants_of_a_hand_built_case():
    from rait.metrics import knowledge_quadrants

    base = ["correct", "correct", "correct", "wrong", "wrong", "wrong", "wrong", "refused"]
    mine = ["correct", "refused", "wrong", "refused", "refused", "wrong", "correct", "refused"]
    q = knowledge_quadrants(mine, base)
    assert {k: q[k] for k in M.QUADRANTS} == {
        "known_correct": 1,
        "known_wrong": 1,
        "known_refused": 1,  # over-refusal
        "unknown_correct": 1,
        "unknown_wrong": 1,  # a hallucination kept
        "unknown_refused": 3,  # good refusals; a question the base refused is unknown too
    }
    assert (q["n_known"], q["n_unknown"]) == (3, 5)
    assert q["refusal_precision"] == 3 / 4  # 3 of the 4 refusals fall on unknown questions
    assert q["refusal_recall"] == 3 / 5  # 3 of the 5 unknown questions are refused


def test_knowledge_quadrants_without_refusals_or_without_unknowns():
    from rait.metrics import knowledge_quadrants

    q = knowledge_quadrants(["correct", "wrong"], ["correct", "wrong"])
    assert q["refusal_precision"] is None and q["refusal_recall"] == 0.0
    q = knowledge_quadrants(["refused", "correct"], ["correct", "correct"])
    assert q["refusal_precision"] == 0.0 and q["refusal_recall"] is None
    with pytest.raises(M.MetricError):
        knowledge_quadrants(["correct"], ["correct", "wrong"])
    with pytest.raises(M.MetricError):
        knowledge_quadrants(["correct"], ["maybe"])


@given(st.lists(st.tuples(st.sampled_from(M.VERDICTS), st.sampled_from(M.VERDICTS)), min_size=1))
def test_knowledge_quadrants_partition_the_questions(pairs):
    from rait.metrics import knowledge_quadrants

    mine, base = [a for a, _ in pairs], [b for _, b in pairs]
    q = knowledge_quadrants(mine, base)
    assert sum(q[k] for k in M.QUADRANTS) == len(pairs)
    assert q["known_refused"] + q["unknown_refused"] == mine.count("refused")
    assert q["n_known"] == base.count("correct")
    # over-refusal is Yang et al.'s over-conservativeness, counted the same way
    h = M.honesty_scores(mine, base)
    if q["n_known"]:
        assert h.over_conservativeness == q["known_refused"] / q["n_known"]
