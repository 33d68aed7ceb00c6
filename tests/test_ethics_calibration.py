"""Reliability bins, expected calibration error, temperature scaling and risk-coverage curves.

Independent references: scikit-learn's ``calibration_curve`` (the same uniform bins), a
hand-computed ECE, a fine grid search for the temperature, synthetic models whose true
calibration is known, and plain loops written here for the risk-coverage curve.
"""

import numpy as np
import pytest
from scipy import special
from sklearn.calibration import calibration_curve

from llmcourse.ethics.calibration import (
    apply_temperature,
    area_under_risk_coverage,
    binary_confidence,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    risk_coverage,
)


# ---------------------------------------------------------------- reliability bins and ECE


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_bins_match_scikit_learn_calibration_curve(n_bins):
    rng = np.random.default_rng(n_bins)
    p = rng.beta(0.7, 0.7, size=600)  # P(positive)
    y = rng.random(600) < p**1.5
    bins = reliability_bins(p, y, n_bins)  # P(positive) as "confidence", y as "correct"
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(bins.accuracy, prob_true, rtol=1e-12)
    np.testing.assert_allclose(bins.confidence, prob_pred, rtol=1e-12)
    assert bins.count.sum() == 600 and (bins.count > 0).all()


def test_bins_with_gaps_and_the_edges_0_and_1():
    c = [0.0, 0.05, 0.93, 1.0, 1.0]
    y = [1, 0, 1, 1, 0]
    bins = reliability_bins(c, y, n_bins=10)
    assert bins.bin.tolist() == [0, 9]  # 0.0 in the first bin, 1.0 in the last, empty bins left out
    assert bins.count.tolist() == [2, 3]
    np.testing.assert_allclose(bins.confidence, [0.025, (0.93 + 2) / 3])
    np.testing.assert_allclose(bins.accuracy, [0.5, 2 / 3])
    np.testing.assert_allclose(bins.edges, np.linspace(0, 1, 11))
    assert np.isfinite(bins.confidence).all() and np.isfinite(bins.accuracy).all()


def test_ece_by_hand():
    # bin [0.6, 0.8): confidences 0.7, 0.7, 0.7, 0.7, accuracy 2/4 -> gap 0.2
    # bin [0.8, 1.0]: confidences 0.9, 0.9, 1.0, 1.0, 0.9, 0.9, accuracy 5/6 -> gap |5/6 - 0.9333| = 0.1
    c = [0.7, 0.7, 0.7, 0.7, 0.9, 0.9, 1.0, 1.0, 0.9, 0.9]
    y = [1, 0, 1, 0, 1, 1, 1, 1, 1, 0]
    expected = 4 / 10 * 0.2 + 6 / 10 * abs(5 / 6 - 5.6 / 6)
    assert expected_calibration_error(c, y, n_bins=5) == pytest.approx(expected)
    # one bin: |overall accuracy - mean confidence|
    assert expected_calibration_error(c, y, n_bins=1) == pytest.approx(abs(0.7 - np.mean(c)))


def test_ece_weights_bins_by_their_counts():
    # unweighted averaging of the two gaps would give (0.5 + 0.0) / 2 = 0.25
    c = [0.95] * 9 + [0.05]
    y = [1] * 9 + [1]  # one bin has accuracy 1 at confidence 0.95, the other 1 at 0.05
    assert expected_calibration_error(c, y, n_bins=10) == pytest.approx(0.9 * 0.05 + 0.1 * 0.95)


def test_ece_of_a_calibrated_model_is_near_zero_and_of_an_overconfident_one_is_not():
    rng = np.random.default_rng(0)
    c = rng.uniform(0.5, 1.0, size=200_000)
    calibrated = rng.random(len(c)) < c  # right exactly as often as it claims
    assert expected_calibration_error(c, calibrated) < 0.01
    overconfident = rng.random(len(c)) < c - 0.15
    assert expected_calibration_error(c, overconfident) == pytest.approx(0.15, abs=0.01)


def test_binary_confidence():
    confidence, label = binary_confidence([0.1, 0.5, 0.8, 1.0])
    np.testing.assert_allclose(confidence, [0.9, 0.5, 0.8, 1.0])
    assert label.tolist() == [0, 1, 1, 1]  # a tie at 0.5 is called positive
    with pytest.raises(ValueError, match="prob_positive"):
        binary_confidence([0.2, 1.2])


def test_binary_confidence_feeds_the_bins():
    rng = np.random.default_rng(1)
    p = rng.random(1000)
    y = rng.random(1000) < p
    confidence, label = binary_confidence(p)
    correct = label == y
    bins = reliability_bins(confidence, correct, n_bins=10)
    assert bins.bin.min() >= 5  # max(p, 1 - p) >= 0.5: only the upper half of the bins
    assert expected_calibration_error(confidence, correct) < 0.06


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.5, 0.6], [1]), "correct must have one entry per confidence"),
        (([0.5, 1.2], [1, 0]), r"confidences must lie in \[0, 1\]"),
        (([-0.1, 0.5], [1, 0]), r"confidences must lie in \[0, 1\]"),
        (([0.5, np.nan], [1, 0]), "confidences contains NaN"),
        (([], []), "confidences must be a non-empty"),
        (([0.5, 0.6], [1, 2]), "correct must hold booleans or 0/1"),
    ],
)
def test_bad_inputs_are_refused_by_name(args, match):
    for function in (reliability_bins, expected_calibration_error, risk_coverage, area_under_risk_coverage):
        with pytest.raises(ValueError, match=match):
            function(*args)


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_bad_bin_counts_are_refused(n_bins):
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5, 0.7], [1, 0], n_bins=n_bins)


# ---------------------------------------------------------------- temperature scaling


def overconfident_binary(seed, n=20_000, factor=3.0):
    rng = np.random.default_rng(seed)
    true_log_odds = rng.normal(0.0, 1.5, size=n)
    labels = (rng.random(n) < special.expit(true_log_odds)).astype(int)
    return factor * true_log_odds, labels


def overconfident_multiclass(seed, n=20_000, k=4, factor=3.0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, size=(n, k))
    labels = (true_logits + rng.gumbel(size=(n, k))).argmax(axis=1)  # a draw from softmax(true_logits)
    return factor * true_logits, labels


@pytest.mark.parametrize("seed", range(5))
def test_temperature_undoes_an_overconfident_binary_model(seed):
    logits, labels = overconfident_binary(seed)
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("seed", range(5))
def test_temperature_undoes_an_overconfident_multiclass_model(seed):
    logits, labels = overconfident_multiclass(seed)
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)


def nll_loop(logits, labels, t):
    p = special.softmax(np.asarray(logits) / t, axis=1)
    return -np.mean(np.log(p[np.arange(len(labels)), labels]))


def test_temperature_matches_a_fine_grid_search():
    logits, labels = overconfident_multiclass(7, n=3_000, factor=2.0)
    coarse = np.exp(np.linspace(np.log(0.5), np.log(8.0), 101))  # steps of 2.8%
    near = coarse[np.argmin([nll_loop(logits, labels, t) for t in coarse])]
    fine = near * np.exp(np.linspace(-0.06, 0.06, 201))  # steps of 0.06% around the coarse best
    best = fine[np.argmin([nll_loop(logits, labels, t) for t in fine])]
    assert fit_temperature(logits, labels) == pytest.approx(best, rel=2e-3)
    # binary log-odds and the equivalent two-column logits [0, z] give the same temperature
    z, y = overconfident_binary(7, n=3_000, factor=0.5)  # under-confident: T < 1
    two_columns = np.stack([np.zeros_like(z), z], axis=1)
    t = fit_temperature(z, y)
    assert t < 1
    assert t == pytest.approx(fit_temperature(two_columns, y), rel=1e-4)


def test_scaling_keeps_the_argmax_and_lowers_the_nll():
    logits, labels = overconfident_multiclass(3, n=5_000)
    t = fit_temperature(logits, labels)
    before, after = apply_temperature(logits, 1.0), apply_temperature(logits, t)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    np.testing.assert_allclose(after.sum(1), 1.0)
    assert nll_loop(logits, labels, t) < nll_loop(logits, labels, 1.0)
    ece_before = expected_calibration_error(before.max(1), before.argmax(1) == labels)
    ece_after = expected_calibration_error(after.max(1), after.argmax(1) == labels)
    assert ece_after < ece_before / 3

    z, y = overconfident_binary(3, n=5_000)
    p = apply_temperature(z, fit_temperature(z, y))
    np.testing.assert_array_equal(p >= 0.5, z >= 0)
    np.testing.assert_allclose(apply_temperature(z, 2.0), special.expit(z / 2))


def test_temperature_refuses_bad_input():
    with pytest.raises(ValueError, match="labels must be one class per row"):
        fit_temperature(np.zeros((4, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match=r"labels must lie in 0 \.\.\. 2"):
        fit_temperature(np.zeros((3, 3)), [0, 1, 3])
    with pytest.raises(ValueError, match=r"labels must lie in 0 \.\.\. 1"):
        fit_temperature(np.zeros(3), [0, 1, 2])
    with pytest.raises(ValueError, match="k >= 2"):
        fit_temperature(np.zeros((3, 1)), [0, 0, 0])
    with pytest.raises(ValueError, match="logits contains NaN"):
        fit_temperature([0.0, np.nan], [0, 1])
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature([0.0, 1.0], [0, 1], bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="temperature must be positive"):
        apply_temperature([0.0, 1.0], 0.0)


# ---------------------------------------------------------------- risk and coverage


def test_risk_coverage_by_hand():
    c = [0.6, 0.9, 0.8, 0.7]
    y = [1, 1, 0, 1]  # by confidence: 0.9 right, 0.8 wrong, 0.7 right, 0.6 right
    curve = risk_coverage(c, y)
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0.0, 1 / 2, 1 / 3, 1 / 4])
    assert area_under_risk_coverage(c, y) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_risk_coverage_matches_a_loop():
    rng = np.random.default_rng(4)
    c = rng.random(50).round(1)  # many ties
    y = rng.random(50) < c
    curve = risk_coverage(c, y)
    order = sorted(range(50), key=lambda i: -c[i])  # Python's sort is stable too
    for k in range(1, 51):
        assert curve.risk[k - 1] == pytest.approx(sum(not y[i] for i in order[:k]) / k)
    assert curve.risk[-1] == pytest.approx(1 - y.mean())  # full coverage: the plain error rate


def test_ties_keep_their_input_order():
    c = [0.8, 0.8, 0.8]
    assert risk_coverage(c, [0, 1, 1]).risk.tolist() == [1.0, 0.5, 1 / 3]
    assert risk_coverage(c, [1, 1, 0]).risk.tolist() == [0.0, 0.0, 1 / 3]


def test_ranking_mistakes_last_gives_the_smallest_area():
    rng = np.random.default_rng(5)
    y = rng.random(200) < 0.7
    good = np.where(y, 0.9, 0.6) + rng.uniform(0, 0.05, 200)  # every mistake less confident
    random = rng.random(200)
    worst = np.where(y, 0.6, 0.9) + rng.uniform(0, 0.05, 200)
    n_err, n = int((~y).sum()), 200
    smallest = sum(max(0, k - (n - n_err)) / k for k in range(1, n + 1)) / n
    assert area_under_risk_coverage(good, y) == pytest.approx(smallest)
    assert area_under_risk_coverage(good, y) < area_under_risk_coverage(random, y) < area_under_risk_coverage(worst, y)
