"""Does a classifier know when it is wrong? Calibration and selective prediction.

- :func:`reliability_bins`, :func:`expected_calibration_error`: group predictions by
  confidence and compare each group's mean confidence with its accuracy (Guo, Pleiss,
  Sun and Weinberger 2017, "On Calibration of Modern Neural Networks", ICML).
- :func:`binary_confidence`: the confidence and label of a binary classifier that gives
  P(positive).
- :func:`fit_temperature`, :func:`apply_temperature`: temperature scaling (Guo et al.
  2017): divide the logits by one number T > 0, fitted on validation data. The argmax,
  and so the accuracy, does not change; only the confidence does.
- :func:`risk_coverage`, :func:`area_under_risk_coverage`: answer only the k most
  confident cases and see how the error rate among them grows with k (selective
  classification, Geifman and El-Yaniv 2017).

Confidences are the probability the model gives its own answer; ``correct`` says
whether that answer was right (booleans or 0/1).

Introduced in: chapter 10, Ethics.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize, special


def _check(confidences, correct) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidences, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"confidences must be a non-empty 1-D array, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("confidences contains NaN or infinity")
    if c.min() < 0 or c.max() > 1:
        raise ValueError(f"confidences must lie in [0, 1], got values from {c.min():g} to {c.max():g}")
    y = np.asarray(correct)
    if y.shape != c.shape:
        raise ValueError(f"correct must have one entry per confidence, shape {c.shape}, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("correct must hold booleans or 0/1")
    return c, y.astype(np.float64)


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


class ReliabilityBins(NamedTuple):
    edges: np.ndarray  # (n_bins + 1,) 0, 1/n_bins, ..., 1
    bin: np.ndarray  # (m,) which bin each row is, only the m bins that hold a prediction
    count: np.ndarray  # (m,) predictions in the bin, all >= 1
    confidence: np.ndarray  # (m,) their mean confidence
    accuracy: np.ndarray  # (m,) the share of them that are correct


def reliability_bins(confidences, correct, n_bins: int = 10) -> ReliabilityBins:
    """Mean confidence and accuracy in each of ``n_bins`` equal-width bins of [0, 1].

    Bin b holds confidences in [b / n_bins, (b + 1) / n_bins), the last one also 1.0
    (scikit-learn's ``calibration_curve`` bins alike; Guo et al. close bins on the
    right instead, which differs only for a confidence exactly on an edge). Empty bins
    are left out, so no entry is ever NaN: ``bin`` says which bins the rows are.
    ``count``, ``confidence`` and ``accuracy`` are what a reliability diagram draws.

    Introduced in: chapter 10, Ethics.
    """
    c, y = _check(confidences, correct)
    n_bins = _check_bins(n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], c, side="right")  # (N,) bin of each prediction, 0 ... n_bins - 1
    count = np.bincount(which, minlength=n_bins)  # (n_bins,)
    used = np.flatnonzero(count)  # (m,)
    total_confidence = np.bincount(which, weights=c, minlength=n_bins)
    total_correct = np.bincount(which, weights=y, minlength=n_bins)
    return ReliabilityBins(
        edges, used, count[used], total_confidence[used] / count[used], total_correct[used] / count[used]
    )


def expected_calibration_error(confidences, correct, n_bins: int = 10) -> float:
    """ECE = sum over bins of (n_b / N) * |accuracy_b - confidence_b|.

    The gap of each bin weighted by its share of the predictions; an empty bin adds 0.
    0 means that, bin by bin, the model is right as often as it claims.

    Introduced in: chapter 10, Ethics.
    """
    bins = reliability_bins(confidences, correct, n_bins)
    weights = bins.count / bins.count.sum()
    return float(np.sum(weights * np.abs(bins.accuracy - bins.confidence)))


def binary_confidence(prob_positive) -> tuple[np.ndarray, np.ndarray]:
    """From P(positive) to (confidence, predicted label): max(p, 1 - p) and ``p >= 0.5``.

    A tie at exactly 0.5 is called positive, as ``llmcourse.finetune.metrics.accuracy`` does.

    Introduced in: chapter 10, Ethics.
    """
    p = np.asarray(prob_positive, dtype=np.float64)
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError("prob_positive must hold probabilities in [0, 1]")
    return np.maximum(p, 1 - p), (p >= 0.5).astype(np.int64)


def _check_logits(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim not in (1, 2) or len(z) == 0:
        raise ValueError(f"logits must be (n,) log-odds or (n, k) class scores, got shape {z.shape}")
    if z.ndim == 2 and z.shape[1] < 2:
        raise ValueError(f"logits of shape (n, k) need k >= 2 classes, got {z.shape}; pass (n,) log-odds instead")
    if not np.isfinite(z).all():
        raise ValueError("logits contains NaN or infinity")
    if y.shape != (len(z),):
        raise ValueError(f"labels must be one class per row of logits, shape ({len(z)},), got {y.shape}")
    k = 2 if z.ndim == 1 else z.shape[1]
    if not np.issubdtype(y.dtype, np.integer) and not np.issubdtype(y.dtype, np.bool_):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in 0 ... {k - 1}, got values from {y.min()} to {y.max()}")
    return z, y.astype(np.int64)


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under softmax(z / T) (sigmoid for log-odds)."""
    z = z / temperature
    if z.ndim == 1:  # -log sigmoid(z) for positives, -log sigmoid(-z) for negatives
        return float(np.mean(np.logaddexp(0.0, -(2 * y - 1) * z)))
    return float(np.mean(special.logsumexp(z, axis=1) - z[np.arange(len(y)), y]))  # (n, k) -> (n,)


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) on (validation) data.

    ``logits`` is (n, k) with ``labels`` in 0 ... k - 1, or (n,) log-odds of the positive
    class with 0/1 ``labels``. The search runs over log T within ``bounds`` (SciPy's bounded
    scalar minimiser), since T is a scale: 0.5 and 2 are equally far from 1. T > 1 means
    the model was over-confident, T < 1 under-confident.

    Introduced in: chapter 10, Ethics.
    """
    z, y = _check_logits(logits, labels)
    low, high = bounds
    if not 0 < low < high:
        raise ValueError(f"bounds must be (low, high) with 0 < low < high, got {bounds!r}")
    result = optimize.minimize_scalar(
        lambda log_t: _nll(z, y, np.exp(log_t)), bounds=(np.log(low), np.log(high)), method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Probabilities after temperature scaling: softmax(logits / T), (n, k) -> (n, k).

    For (n,) log-odds, the (n,) probabilities of the positive class, sigmoid(logits / T).

    Introduced in: chapter 10, Ethics.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    if z.ndim == 1:
        return special.expit(z)
    if z.ndim != 2:
        raise ValueError(f"logits must be (n,) log-odds or (n, k) class scores, got shape {z.shape}")
    return special.softmax(z, axis=1)


class RiskCoverage(NamedTuple):
    coverage: np.ndarray  # (N,) k / N for k = 1 ... N
    risk: np.ndarray  # (N,) error rate among the k most confident predictions


def risk_coverage(confidences, correct) -> RiskCoverage:
    """Error rate among the k most confident predictions, for every k = 1 ... N.

    Predictions are sorted by confidence, highest first. Ties keep their input order
    (a stable sort), so within a block of equal confidences the curve depends on that
    order; at the block's end it does not.

    Introduced in: chapter 10, Ethics.
    """
    c, y = _check(confidences, correct)
    order = np.argsort(-c, kind="stable")  # (N,) most confident first, ties in input order
    k = np.arange(1, len(c) + 1)
    errors = np.cumsum(1 - y[order])  # (N,) mistakes among the first k
    return RiskCoverage(k / len(c), errors / k)


def area_under_risk_coverage(confidences, correct) -> float:
    """AURC: the mean of :func:`risk_coverage`'s risk over k = 1 ... N.

    The area under the step curve with one step of width 1/N per prediction. Lower is
    better; ranking every mistake last gives the smallest value the errors allow.

    Introduced in: chapter 10, Ethics.
    """
    return float(risk_coverage(confidences, correct).risk.mean())
