"""An n-gram language model with interpolated Kneser-Ney smoothing: the baseline to beat.

It predicts the next token from the previous ``order - 1`` tokens by counting.
Counts alone give zero probability to anything unseen, so Kneser-Ney subtracts
a small discount D from every seen count and hands the freed mass to the next
shorter history, down to a uniform distribution over the vocabulary:

    P(w | h) = max(c(h, w) - D, 0) / c(h) + D * N(h) / c(h) * P(w | h minus its first token)

where N(h) is the number of distinct tokens seen after h. The shorter histories
count *continuations* (in how many different contexts a token appears) rather
than occurrences: "Francisco" is frequent, but almost only after "San".

Counting is done with NumPy on integer keys (a k-gram's ids read as a base-V
number), so a model of a few million tokens fits in a few seconds.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class _Level:
    """Counts for one n-gram length k: sorted k-gram keys with their counts, and per-history totals."""

    keys: np.ndarray  # (n_kgrams,) sorted int64 keys of the k-grams seen
    counts: np.ndarray  # (n_kgrams,) raw counts (longest order) or continuation counts
    history_keys: np.ndarray  # (n_histories,) sorted keys of the (k-1)-token histories
    history_totals: np.ndarray  # (n_histories,) sum of counts after each history
    history_types: np.ndarray  # (n_histories,) distinct tokens seen after each history
    discount: float


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at each query's position in sorted ``keys``, 0 where the query is absent."""
    if len(keys) == 0:
        return np.zeros(len(queries), dtype=values.dtype)
    pos = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[pos] == queries, values[pos], 0)


def _kgram_keys(tokens: np.ndarray, k: int, vocab_size: int) -> np.ndarray:
    """Key of every k-gram of ``tokens``, in order: (len - k + 1,) int64."""
    n = len(tokens) - k + 1
    key = np.zeros(max(n, 0), dtype=np.int64)
    for j in range(k):
        key = key * vocab_size + tokens[j : j + n]
    return key


class KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model over token ids ``0 .. vocab_size - 1``.

    Introduced in: the Pretraining chapter.
    """

    def __init__(self, order: int, vocab_size: int):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        if vocab_size ** order >= 2**62:
            raise ValueError(f"vocab_size ** order = {vocab_size}^{order} does not fit the int64 keys")
        self.order, self.vocab_size = order, vocab_size
        self.levels: list[_Level] = []

    def fit(self, tokens: np.ndarray) -> KneserNeyLM:
        """Count the n-grams of one token stream (``order`` or more tokens)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(tokens) < self.order:
            raise ValueError(f"need at least {self.order} tokens to count {self.order}-grams, got {len(tokens)}")
        if tokens.min() < 0 or tokens.max() >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {tokens.min()}..{tokens.max()}")
        V, levels = self.vocab_size, []
        # the longest order counts occurrences; each shorter one counts distinct left neighbours
        keys, counts = np.unique(_kgram_keys(tokens, self.order, V), return_counts=True)
        for k in range(self.order, 0, -1):
            levels.append(self._level(keys, counts, k))
            if k > 1:  # continuation count of a (k-1)-gram: how many distinct k-grams end with it
                keys, counts = np.unique(keys % V ** (k - 1), return_counts=True)
        self.levels = levels[::-1]  # levels[k - 1] holds the k-grams
        return self

    def _level(self, keys: np.ndarray, counts: np.ndarray, k: int) -> _Level:
        history = keys // self.vocab_size  # the first k - 1 tokens (0 for unigrams)
        history_keys, start = np.unique(history, return_index=True)
        totals = np.add.reduceat(counts, start)
        types = np.diff(np.append(start, len(keys)))
        n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
        discount = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
        return _Level(keys, counts, history_keys, totals, types, float(discount))

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """Natural log of P(token t | the ``order - 1`` before it) for every t >= order - 1."""
        if not self.levels:
            raise RuntimeError("the model has no counts yet: call fit(tokens) first")
        tokens = np.asarray(tokens, dtype=np.int64)
        first = self.order - 1
        if len(tokens) <= first:
            raise ValueError(f"need more than {first} tokens to score any of them")
        target = tokens[first:]  # (N,)
        p = np.full(len(target), 1.0 / self.vocab_size)  # the uniform floor
        for k, level in enumerate(self.levels, start=1):
            keys = _kgram_keys(tokens[first - k + 1 :], k, self.vocab_size)  # (N,) k-grams ending at each target
            history = keys // self.vocab_size
            c_hw = _lookup(level.keys, level.counts, keys).astype(np.float64)
            c_h = _lookup(level.history_keys, level.history_totals, history).astype(np.float64)
            n_h = _lookup(level.history_keys, level.history_types, history).astype(np.float64)
            seen = c_h > 0
            safe = np.where(seen, c_h, 1.0)
            interpolated = np.maximum(c_hw - level.discount, 0.0) / safe + level.discount * n_h / safe * p
            p = np.where(seen, interpolated, p)  # an unseen history falls back to the shorter one
        return np.log(p)

    def loss(self, tokens: np.ndarray) -> float:
        """Mean negative log-likelihood per token, in nats (exp of it is the perplexity)."""
        return float(-self.log_probs(tokens).mean())

    def perplexity(self, tokens: np.ndarray) -> float:
        return math.exp(self.loss(tokens))
