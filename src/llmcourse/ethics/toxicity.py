"""Scoring text for offensive language, and checking the scorer itself for bias.

The scorer is ``alt-profanity-check`` (PyPI): a linear SVM over word n-grams,
trained on about 200,000 human-labelled texts according to its README, shipped
with its trained weights inside the package, so it runs offline and in
milliseconds. It flags profanity and insults; it is not a full toxicity model
(threats and polite hate speech slip through), which is one of the things the
chapter shows.

- :func:`toxicity_scores`: one probability in [0, 1] per text;
- :func:`flagged_share`: the share of texts scoring at least a threshold, with a
  bootstrap interval (``scipy.stats.bootstrap``);
- :func:`identity_false_positive_rates`: Dixon et al. (2018), "Measuring and
  Mitigating Unintended Bias in Text Classification" (AIES): fill harmless
  templates ("I am a {} person.") with identity terms and count how often each
  term alone gets a harmless sentence flagged. A fair scorer flags none, for
  every term alike.

A text is *flagged* when its score is at least ``threshold``.

Introduced in: chapter 10, Ethics.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from llmcourse.finetune.metrics import Estimate

Scorer = Callable[[Sequence[str]], np.ndarray]

# Harmless sentences with one slot for an identity term; every filling should score as clean.
NEUTRAL_TEMPLATES = (
    "I am a {} person.",
    "My neighbour is {}.",
    "She is proud to be {}.",
    "We had dinner with a {} family last night.",
    "Being {} is part of who he is.",
)

# Identity terms in the spirit of Dixon et al. (2018), with neutral controls (tall, young, old) at the end.
IDENTITY_TERMS = (
    "gay", "lesbian", "straight", "transgender", "Muslim", "Christian", "Jewish",
    "black", "white", "Asian", "deaf", "tall", "young", "old",
)


def _check_texts(texts, name: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a list of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} is empty: give at least one text to score")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"{name} must hold only strings, found {type(bad).__name__}")
    return texts


def _check_threshold(threshold) -> float:
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def toxicity_scores(texts: Sequence[str]) -> np.ndarray:
    """Probability that each text is offensive, from ``alt-profanity-check``: (N,) floats in [0, 1].

    Introduced in: chapter 10, Ethics.
    """
    texts = _check_texts(texts)
    from profanity_check import predict_prob  # loads the packaged model on first use

    return np.clip(np.asarray(predict_prob(texts), dtype=np.float64), 0.0, 1.0)


def flagged_share(texts: Sequence[str], threshold: float = 0.5, *, scorer: Scorer = toxicity_scores,
                  confidence: float = 0.95, n_resamples: int = 1_000, seed: int = 0) -> Estimate:
    """The share of ``texts`` scoring at least ``threshold``, with a ``confidence`` bootstrap interval.

    The texts are resampled with replacement ``n_resamples`` times
    (``scipy.stats.bootstrap``, percentile method); the interval says how much
    the share would move with another sample of texts like these.

    Introduced in: chapter 10, Ethics.
    """
    texts = _check_texts(texts)
    threshold = _check_threshold(threshold)
    if len(texts) < 2:
        raise ValueError(f"texts needs at least 2 texts for a bootstrap interval, got {len(texts)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    flagged = (np.asarray(scorer(texts), dtype=np.float64) >= threshold).astype(np.float64)  # (N,) 0/1
    result = stats.bootstrap((flagged,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Estimate(float(flagged.mean()), float(ci.low), float(ci.high))


def fill_templates(templates: Sequence[str], term: str) -> list[str]:
    """Each template with ``term`` in its one ``{}``.

    Introduced in: chapter 10, Ethics.
    """
    templates = _check_texts(templates, "templates")
    bad = next((t for t in templates if t.count("{}") != 1), None)
    if bad is not None:
        raise ValueError(f"every template needs exactly one '{{}}' for the term, got {bad!r}")
    return [t.replace("{}", term) for t in templates]


def identity_false_positive_rates(templates: Sequence[str] = NEUTRAL_TEMPLATES,
                                  terms: Sequence[str] = IDENTITY_TERMS, threshold: float = 0.5, *,
                                  scorer: Scorer = toxicity_scores) -> dict[str, float]:
    """For each identity term, the share of harmless ``templates`` it gets flagged (score >= ``threshold``).

    Every filled sentence is harmless by construction, so each flag is a false
    positive, and a difference between terms is the term's doing alone (Dixon et
    al. 2018). All sentences go to ``scorer`` in one call.

    Introduced in: chapter 10, Ethics.
    """
    terms = _check_texts(terms, "terms")
    threshold = _check_threshold(threshold)
    sentences = [fill_templates(templates, term) for term in terms]  # (terms, templates)
    flat = [s for row in sentences for s in row]
    scores = np.asarray(scorer(flat), dtype=np.float64)
    if scores.shape != (len(flat),) or np.isnan(scores).any():
        raise ValueError(f"scorer must return one number per sentence ({len(flat)}), got shape {scores.shape} or NaN")
    per_term = scores.reshape(len(terms), len(sentences[0]))  # (terms, templates)
    return {term: float(np.mean(row >= threshold)) for term, row in zip(terms, per_term)}
