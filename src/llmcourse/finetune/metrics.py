"""Scores of a classifier, with 95% bootstrap confidence intervals.

The metrics come from scikit-learn (ROC-AUC, accuracy, macro-F1) and the
intervals from SciPy's ``scipy.stats.bootstrap``: the test sentences are
resampled with replacement (labels and scores together), each metric recomputed
on every resample, and the interval read off the 2.5th and 97.5th percentiles.
SciPy's bias-corrected BCa intervals are one argument away (``method="BCa"``);
they also need a jackknife, one more metric call per sentence, which triples
the cost on a test set of 853 sentences.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from llmcourse.finetune.data import check_labels


def _check(labels, scores, both_classes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    y = check_labels(np.asarray(labels), 2).numpy()
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) != len(y):
        raise ValueError(f"scores must be one number per label ({len(y)}), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contains NaN or infinity")
    if both_classes and len(np.unique(y)) < 2:
        raise ValueError("labels holds a single class: ROC-AUC needs both")
    return y, s


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative.

    Introduced in: chapter 8, Fine-tuning.
    """
    y, s = _check(labels, scores, both_classes=True)
    return float(roc_auc_score(y, s))


def accuracy(labels, scores, threshold: float = 0.5) -> float:
    """Share of labels matched by ``scores >= threshold`` (scores are P(positive)).

    Introduced in: chapter 8, Fine-tuning.
    """
    y, s = _check(labels, scores)
    return float(accuracy_score(y, (s >= threshold).astype(int)))


def macro_f1(labels, scores, threshold: float = 0.5) -> float:
    """The F1 of each class, averaged with equal weight.

    Introduced in: chapter 8, Fine-tuning.
    """
    y, s = _check(labels, scores)
    return float(f1_score(y, (s >= threshold).astype(int), average="macro"))


METRICS: dict[str, Callable[..., float]] = {"roc_auc": roc_auc, "accuracy": accuracy, "macro_f1": macro_f1}


# The same three metrics on a whole stack of resamples at once, (R, n) -> (R,), so that SciPy's
# bootstrap makes one call instead of a thousand. Each equals its scikit-learn counterpart on
# every row (tests/test_finetune_regimes.py checks it); the value reported is always scikit-learn's.
def _auc_rows(y, s, axis=-1):
    """ROC-AUC as the Mann-Whitney U of the positives' ranks (ties share their mean rank)."""
    positive = np.moveaxis(y, axis, -1) == 1
    ranks = stats.rankdata(np.moveaxis(s, axis, -1), axis=-1)
    n1 = positive.sum(-1)
    n0 = positive.shape[-1] - n1
    u = (ranks * positive).sum(-1) - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)  # one class only: no AUC


def _accuracy_rows(y, s, axis=-1):
    return np.mean((np.moveaxis(y, axis, -1) == 1) == (np.moveaxis(s, axis, -1) >= 0.5), axis=-1)


def _macro_f1_rows(y, s, axis=-1):
    truth, said = np.moveaxis(y, axis, -1) == 1, np.moveaxis(s, axis, -1) >= 0.5
    tp, tn = (truth & said).sum(-1), (~truth & ~said).sum(-1)
    errors = (truth != said).sum(-1)  # false positives + false negatives

    def f1(hits):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(2 * hits + errors > 0, 2 * hits / (2 * hits + errors), 0.0)  # scikit-learn: 0 if undefined

    return (f1(tp) + f1(tn)) / 2


_ROWS = {roc_auc: _auc_rows, accuracy: _accuracy_rows, macro_f1: _macro_f1_rows}


class Estimate(NamedTuple):
    value: float  # on the whole set
    low: float  # lower end of the interval
    high: float  # upper end


def bootstrap_interval(
    metric: Callable[..., float] | str,
    labels,
    scores,
    confidence: float = 0.95,
    n_resamples: int = 1_000,
    seed: int = 0,
    method: str = "percentile",
) -> Estimate:
    """``metric(labels, scores)`` and its ``confidence`` bootstrap interval (``scipy.stats.bootstrap``, paired).

    Introduced in: chapter 8, Fine-tuning.
    """
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)} or a function, got {metric!r}")
        metric = METRICS[metric]
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    y, s = _check(labels, scores, both_classes=metric is roc_auc)
    if metric in _ROWS:  # one vectorised call over every resample
        statistic, vectorized = _ROWS[metric], True
    else:  # any other metric(labels, scores), one resample at a time
        def statistic(y_resampled, s_resampled):
            return metric(y_resampled.astype(np.int64), s_resampled)  # SciPy hands the labels back as floats

        vectorized = False
    result = stats.bootstrap(
        (y, s), statistic, paired=True, vectorized=vectorized, confidence_level=confidence,
        n_resamples=n_resamples, method=method, rng=np.random.default_rng(seed),
    )
    return Estimate(metric(y, s), float(result.confidence_interval.low), float(result.confidence_interval.high))


def paired_difference(
    metric: str, labels, scores_a, scores_b, confidence: float = 0.95, n_resamples: int = 1_000, seed: int = 0
) -> Estimate:
    """``metric(a) - metric(b)`` on the same sentences, with a paired bootstrap interval.

    Both classifiers are scored on the same resamples, so the interval reflects how
    much they differ, not how hard the test set is. Introduced in: chapter 8, Fine-tuning.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    y, a = _check(labels, scores_a, both_classes=metric == "roc_auc")
    _, b = _check(labels, scores_b)
    rows = _ROWS[METRICS[metric]]

    def gap(y_, a_, b_, axis=-1):
        return rows(y_, a_, axis) - rows(y_, b_, axis)

    result = stats.bootstrap((y, a, b), gap, paired=True, vectorized=True, confidence_level=confidence,
                             n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    value = METRICS[metric](y, a) - METRICS[metric](y, b)
    return Estimate(value, float(result.confidence_interval.low), float(result.confidence_interval.high))


def classification_report(labels, scores, confidence: float = 0.95, n_resamples: int = 1_000, seed: int = 0) -> dict:
    """Every metric of :data:`METRICS` as an :class:`Estimate` with its bootstrap interval.

    Introduced in: chapter 8, Fine-tuning.
    """
    return {name: bootstrap_interval(name, labels, scores, confidence, n_resamples, seed) for name in METRICS}
