"""Measuring bias: association tests on embeddings, and counterfactual tests of a classifier.

- :func:`association`, :func:`effect_size`, :func:`weat`: the Word Embedding Association
  Test of Caliskan, Bryson and Narayanan (2017), "Semantics derived automatically from
  language corpora contain human-like biases", Science 356:183. Two sets of target
  vectors X, Y (flowers, insects) and two sets of attribute vectors A, B (pleasant,
  unpleasant); the effect size says how much nearer X sits to A than Y does, in
  standard deviations, and a permutation test says how often a random split of
  X ∪ Y does as well.
- :func:`seat_sentences`, :func:`seat_vectors`: the sentence version (SEAT) of May et
  al. (2019), "On Measuring Social Biases in Sentence Encoders", NAACL: each word goes
  into short, semantically bleached sentences ("This is {}."), so that a sentence
  encoder can embed it.
- :func:`counterfactual_pairs`, :func:`counterfactual_gap`: the Equity Evaluation
  Corpus idea of Kiritchenko and Mohammad (2018): score the same sentence twice,
  with only a person term swapped ("my brother" / "my sister"), and measure the gap.

Word lists of the published tests are in :mod:`llmcourse.ethics.wordlists`.

Introduced in: chapter 10, Ethics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

ALTERNATIVES = ("two-sided", "greater", "less")

# Semantically bleached sentences, after May et al. (2019): they say nothing but "here is
# a word", so what the encoder adds comes from the word. Our own wording, without an
# article, so that plurals ("children") and adjectives ("happy") fit too.
SEAT_TEMPLATES = (
    "This is {}.",
    "That is {}.",
    "There is {}.",
    "Here is {}.",
    "{} is here.",
    "{} is there.",
    "It is {}.",
    "We talked about {}.",
)
# The same for first names: sentences about a person.
SEAT_NAME_TEMPLATES = (
    "This is {}.",
    "That is {}.",
    "Here is {}.",
    "There is {}.",
    "{} is here.",
    "{} is there.",
    "{} is a person.",
    "The person's name is {}.",
)


# ---------------------------------------------------------------- WEAT


def _vectors(vectors, name: str, dim: int | None = None) -> np.ndarray:
    """``vectors`` as a float64 (n, d) array of non-zero rows, or a ValueError naming ``name``."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of vectors (n, d), got shape {v.shape}")
    if len(v) == 0:
        raise ValueError(f"{name} is empty: it needs at least one vector")
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"{name} has vectors of dimension {v.shape[1]}, X has {dim}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or infinity")
    zero = np.flatnonzero(np.linalg.norm(v, axis=1) == 0)
    if len(zero):
        raise ValueError(f"{name}[{zero[0]}] is the zero vector: its cosine with anything is undefined")
    return v


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # (n, d), every row of length 1


def _association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for checked arrays: (n, d), (na, d), (nb, d) -> (n,)."""
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)  # (n, na) -> (n,) minus (n, nb) -> (n,)


def association(w, A, B) -> np.ndarray | float:
    """s(w, A, B) = mean cosine of ``w`` with A minus mean cosine with B.

    ``w`` is one vector (d,) or a stack of them (n, d); A is (na, d), B is (nb, d).
    Returns a float for one vector, an (n,) array for a stack.

    Introduced in: chapter 10, Ethics.
    """
    one = np.ndim(w) == 1
    w = _vectors(np.atleast_2d(w) if one else w, "w")
    a = _vectors(A, "A", w.shape[1])
    b = _vectors(B, "B", w.shape[1])
    s = _association(w, a, b)
    return float(s[0]) if one else s


def _check_sets(X, Y, A, B) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = _vectors(X, "X")
    return x, _vectors(Y, "Y", x.shape[1]), _vectors(A, "A", x.shape[1]), _vectors(B, "B", x.shape[1])


def _effect_size(sx: np.ndarray, sy: np.ndarray) -> float:
    spread = np.concatenate([sx, sy]).std(ddof=1)  # the SAMPLE standard deviation over X ∪ Y
    if not spread > 0:
        raise ValueError("every vector of X and Y has the same association: the effect size is 0 / 0")
    return float((sx.mean() - sy.mean()) / spread)


def effect_size(X, Y, A, B) -> float:
    """WEAT effect size d: (mean of s(x) over X - mean of s(y) over Y) / std of s(w) over X ∪ Y.

    The standard deviation is the *sample* one (``ddof=1``, dividing by |X| + |Y| - 1),
    as in Caliskan et al. (2017); the population one would make d a little larger.
    d is positive when X is nearer A (and Y nearer B); for sets of equal size |d| < 2.

    Introduced in: chapter 10, Ethics.
    """
    x, y, a, b = _check_sets(X, Y, A, B)
    return _effect_size(_association(x, a, b), _association(y, a, b))


class WEATResult(NamedTuple):
    effect_size: float  # d, in (sample) standard deviations
    p_value: float  # of the permutation test
    statistic: float  # S = sum of s(x) over X - sum of s(y) over Y
    exact: bool  # True: every partition of X ∪ Y was tried; False: a random sample of them
    n_permutations: int  # partitions tried


def _partition_sums(s: np.ndarray, n_x: int, exact: bool, n_permutations: int, seed: int, chunk: int):
    """Yield, a chunk at a time, the sum of ``s`` over the X-part of each partition: (m,) arrays."""
    n = len(s)
    if exact:  # every subset of size n_x, in itertools' order
        subsets = itertools.combinations(range(n), n_x)
        while block := list(itertools.islice(subsets, chunk)):
            yield s[np.array(block)].sum(axis=1)  # (m, n_x) -> (m,)
    else:  # random subsets of size n_x: the first n_x entries of random permutations
        rng = np.random.default_rng(seed)
        for start in range(0, n_permutations, chunk):
            m = min(chunk, n_permutations - start)
            order = rng.permuted(np.tile(np.arange(n), (m, 1)), axis=1)  # (m, n), each row a permutation
            yield s[order[:, :n_x]].sum(axis=1)  # (m, n_x) -> (m,)


def weat(
    X, Y, A, B, alternative: str = "two-sided", n_permutations: int = 10_000, seed: int = 0
) -> WEATResult:
    """The WEAT effect size and its permutation test.

    The test statistic is S = sum of s(x, A, B) over X - sum of s(y, A, B) over Y. Under
    the null hypothesis the labels "X" and "Y" are exchangeable, so the test re-splits
    X ∪ Y into two sets of the *original sizes* |X| and |Y| and counts how often the
    split's statistic S' is as extreme as S: S' >= S (``"greater"``, the one-sided test
    Caliskan et al. report), S' <= S (``"less"``), or |S'| >= |S| (``"two-sided"``).

    When there are at most ``n_permutations`` splits (C(|X| + |Y|, |X|) of them) all are
    tried and the p-value is exact: the share of splits as extreme as S, the observed one
    included. Otherwise ``n_permutations`` random splits are drawn (seeded), and the
    p-value is (count + 1) / (n_permutations + 1), which counts the observed split once
    and is never 0. Each s(w) is computed once; a split's S' is then 2 * (sum over its
    X-part) - (sum over all), evaluated for thousands of splits at a time.

    Introduced in: chapter 10, Ethics.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    x, y, a, b = _check_sets(X, Y, A, B)
    sx, sy = _association(x, a, b), _association(y, a, b)
    s = np.concatenate([sx, sy])  # (|X| + |Y|,) one association per target vector
    total = s.sum()
    statistic = 2 * sx.sum() - total  # = sum(sx) - sum(sy)

    n_splits = math.comb(len(s), len(x))
    exact = n_splits <= n_permutations
    tol = 1e-12 * max(1.0, float(np.abs(s).sum()))  # the same split summed in another order may differ by rounding
    count, tried = 0, 0
    for sums in _partition_sums(s, len(x), exact, n_permutations, seed, chunk=max(1, 2**18 // len(s))):
        s_perm = 2 * sums - total  # (m,) the statistic of each split
        if alternative == "greater":
            count += int((s_perm >= statistic - tol).sum())
        elif alternative == "less":
            count += int((s_perm <= statistic + tol).sum())
        else:
            count += int((np.abs(s_perm) >= abs(statistic) - tol).sum())
        tried += len(sums)
    p_value = count / tried if exact else (count + 1) / (tried + 1)
    return WEATResult(_effect_size(sx, sy), float(p_value), float(statistic), exact, tried)


# ---------------------------------------------------------------- SEAT


def _check_words(words: Sequence[str], name: str) -> list[str]:
    if isinstance(words, str):
        raise TypeError(f"{name} must be a sequence of strings, not one string")
    words = list(words)
    if not words:
        raise ValueError(f"{name} is empty")
    bad = [i for i, w in enumerate(words) if not isinstance(w, str) or not w.strip()]
    if bad:
        raise ValueError(f"{name}[{bad[0]}] must be a non-empty string, got {words[bad[0]]!r}")
    return words


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]  # a word filled in at the start begins the sentence


def seat_sentences(words: Sequence[str], templates: Sequence[str] = SEAT_TEMPLATES) -> tuple[list[str], np.ndarray]:
    """Put every word into every template: the sentences, and for each the index of its word.

    The sentences run word by word (all templates of ``words[0]`` first), so ``index``
    is ``[0, 0, ..., 1, 1, ...]``. A word that starts a sentence gets a capital letter.

    Introduced in: chapter 10, Ethics.
    """
    words = _check_words(words, "words")
    templates = _check_words(templates, "templates")
    bad = [i for i, t in enumerate(templates) if t.count("{}") != 1]
    if bad:
        raise ValueError(f"templates[{bad[0]}] must hold exactly one '{{}}' slot, got {templates[bad[0]]!r}")
    sentences = [_capitalised(t.replace("{}", w)) for w in words for t in templates]
    index = np.repeat(np.arange(len(words)), len(templates))  # (len(words) * len(templates),)
    return sentences, index


def seat_vectors(
    embed: Callable[[list[str]], np.ndarray], words: Sequence[str], templates: Sequence[str] = SEAT_TEMPLATES
) -> np.ndarray:
    """One vector per word: the mean of ``embed``'s vectors for the word's template sentences.

    ``embed`` maps a list of n sentences to an (n, d) array (for instance
    :func:`~llmcourse.analysis.embeddings.sentence_embeddings`). May et al. (2019) keep
    every sentence as a member of its set; averaging first gives each word one vector,
    so the same :func:`weat` and word lists serve words and sentences alike.

    Introduced in: chapter 10, Ethics.
    """
    sentences, index = seat_sentences(words, templates)
    v = np.asarray(embed(sentences), dtype=np.float64)
    if v.ndim != 2 or len(v) != len(sentences):
        raise ValueError(f"embed must return one vector per sentence, shape ({len(sentences)}, d), got {v.shape}")
    n_words = int(index[-1]) + 1
    return v.reshape(n_words, len(sentences) // n_words, -1).mean(axis=1)  # (W * T, d) -> (W, T, d) -> (W, d)


# ---------------------------------------------------------------- counterfactual tests


def counterfactual_pairs(
    templates: Sequence[str], group_a: Sequence[str], group_b: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Fill every template with each pair of swapped terms: two aligned lists of sentences.

    A template holds the slot ``{person}``; ``group_a[i]`` and ``group_b[i]`` are the two
    versions of one term ("my brother", "my sister"). Sentence j of the first list and
    sentence j of the second come from the same template and differ only in that term.
    They run template by template; a term that starts a sentence gets a capital letter.

    Introduced in: chapter 10, Ethics.
    """
    templates = _check_words(templates, "templates")
    group_a, group_b = _check_words(group_a, "group_a"), _check_words(group_b, "group_b")
    if len(group_a) != len(group_b):
        raise ValueError(f"group_a has {len(group_a)} terms but group_b has {len(group_b)}: they must pair up")
    bad = [i for i, t in enumerate(templates) if "{person}" not in t]
    if bad:
        raise ValueError(f"templates[{bad[0]}] has no '{{person}}' slot: {templates[bad[0]]!r}")
    sentences_a = [_capitalised(t.replace("{person}", term)) for t in templates for term in group_a]
    sentences_b = [_capitalised(t.replace("{person}", term)) for t in templates for term in group_b]
    return sentences_a, sentences_b


class CounterfactualGap(NamedTuple):
    mean_gap: float  # mean of score_a - score_b over the pairs
    low: float  # lower end of the paired bootstrap interval of mean_gap
    high: float  # upper end
    flip_rate: float  # share of pairs whose label (score >= threshold) differs
    n_pairs: int


def counterfactual_gap(
    scores_a,
    scores_b,
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int = 0,
) -> CounterfactualGap:
    """How a classifier's scores move when only the person term changes.

    ``scores_a[i]`` and ``scores_b[i]`` are the scores of the two sentences of pair i (from
    :func:`counterfactual_pairs`). The mean gap comes with a percentile bootstrap interval
    that resamples *pairs* (``scipy.stats.bootstrap`` with ``paired=True``), so the
    interval reflects how consistent the gap is, not how varied the sentences are. The
    flip rate is the share of pairs for which ``score >= threshold`` changes.

    Introduced in: chapter 10, Ethics.
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or len(a) < 2:
        raise ValueError(f"scores_a must be a 1-D array of at least 2 scores, got shape {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"scores_b must pair up with scores_a, shape {a.shape}, got {b.shape}")
    for name, v in (("scores_a", a), ("scores_b", b)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinity")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")

    def mean_gap(a_, b_, axis=-1):
        return np.mean(a_ - b_, axis=axis)

    if np.ptp(a - b) == 0:  # every pair moves by the same amount: the interval is that point
        low = high = float(a[0] - b[0])
    else:
        result = stats.bootstrap((a, b), mean_gap, paired=True, vectorized=True, confidence_level=confidence,
                                 n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    flips = (a >= threshold) != (b >= threshold)
    return CounterfactualGap(float(np.mean(a - b)), low, high, float(flips.mean()), len(a))
