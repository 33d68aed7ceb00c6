"""k-means clustering (Lloyd's algorithm) with k-means++ seeding.

k-means looks for k centres that make the **inertia**, the sum of squared
distances from every point to its nearest centre, small. Lloyd's algorithm
alternates two steps that each lower it:

1. **assign** every point to its nearest centre;
2. **update** every centre to the mean of its points.

It stops when the centres move less than ``tol`` (relative to the data's
variance) or after ``max_iter`` rounds. It finds a local minimum that depends on
where it starts, so the start matters. **k-means++** (Arthur and Vassilvitskii
2007) picks the first centre uniformly among the points, then each next one
with probability proportional to its squared distance to the nearest centre
chosen so far: far-away points are likely picks, so the centres start spread
out. The greedy variant draws a few candidates per step and keeps the best.
``n_init`` restarts keep the run with the lowest inertia.

**Empty clusters.** When the assign step leaves a centre without points, that
centre moves to the point farthest from its own centre (the worst-served
point), so every run ends with k non-empty clusters and no NaN centre.

Tested against scikit-learn's ``KMeans`` on the same data (inertia within 1%).

Introduced in: chapter 9, Interpreting embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmcourse.analysis.pca import _as_matrix


def squared_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(n, d) points and (k, d) centres -> (n, k) squared Euclidean distances (never negative)."""
    d2 = (X**2).sum(1)[:, None] - 2 * X @ centers.T + (centers**2).sum(1)[None, :]  # (n, k)
    return np.maximum(d2, 0.0)  # rounding can dip below zero


def kmeans_plus_plus(X, k: int, rng: np.random.Generator, n_local_trials: int | None = 1) -> np.ndarray:
    """k starting centres (k, d) drawn by k-means++ (D² sampling) from the rows of ``X``.

    With ``n_local_trials = m > 1`` every step draws m candidates the same way and
    keeps the one that lowers the total squared distance most ("greedy k-means++",
    which scikit-learn uses with m = 2 + ln k; ``None`` picks that value).

    Introduced in: chapter 9, Interpreting embeddings.
    """
    X = _as_matrix(X)
    _check_k(k, len(X))
    trials = 2 + int(np.log(k)) if n_local_trials is None else n_local_trials
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"n_local_trials must be a positive integer or None, got {n_local_trials!r}")
    chosen = [int(rng.integers(len(X)))]
    nearest = squared_distances(X, X[chosen])[:, 0]  # (n,) squared distance to the nearest chosen centre
    for _ in range(1, k):
        total = nearest.sum()
        if total > 0:
            candidates = rng.choice(len(X), size=trials, p=nearest / total)  # D² sampling
        else:  # every point already sits on a centre (duplicates): any point will do
            candidates = rng.integers(len(X), size=trials)
        after = np.minimum(nearest[None, :], squared_distances(X, X[candidates]).T)  # (m, n) with each candidate
        best = int(after.sum(1).argmin())
        chosen.append(int(candidates[best]))
        nearest = after[best]
    return X[chosen].copy()


def _check_k(k, n: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"n_clusters={k} is larger than the number of points ({n})")


def lloyd(X: np.ndarray, centers: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Assign and update until the centres stop moving; returns (centres (k, d), labels (n,), rounds)."""
    threshold = tol * X.var(axis=0).mean()  # "stopped moving", relative to the data's spread
    centers = centers.copy()
    for rounds in range(1, max_iter + 1):
        d2 = squared_distances(X, centers)  # (n, k)
        labels = d2.argmin(1)  # (n,) assign
        new = np.zeros_like(centers)
        np.add.at(new, labels, X)
        sizes = np.bincount(labels, minlength=len(centers))  # (k,)
        empty = np.flatnonzero(sizes == 0)
        new[sizes > 0] /= sizes[sizes > 0, None]  # update: the mean of each cluster
        if len(empty):  # move each empty centre to one of the worst-served points
            worst = np.argsort(-d2[np.arange(len(X)), labels], kind="stable")[: len(empty)]
            new[empty] = X[worst]
        shift = ((new - centers) ** 2).sum()
        centers = new
        if shift <= threshold:
            break
    labels = squared_distances(X, centers).argmin(1)
    return centers, labels, rounds


@dataclass
class KMeans:
    """``KMeans(k, seed=0).fit(X)``: ``cluster_centers_`` (k, d), ``labels_`` (n,), ``inertia_``, ``n_iter_``.

    Introduced in: chapter 9, Interpreting embeddings.
    """

    n_clusters: int
    n_init: int = 1
    max_iter: int = 300
    tol: float = 1e-4
    seed: int = 0
    n_local_trials: int | None = None  # k-means++ candidates per step; None = 2 + ln k (greedy, as scikit-learn)
    cluster_centers_: np.ndarray = field(init=False, repr=False)
    labels_: np.ndarray = field(init=False, repr=False)
    inertia_: float = field(init=False, repr=False)
    n_iter_: int = field(init=False, repr=False)

    def fit(self, X) -> KMeans:
        X = _as_matrix(X)
        _check_k(self.n_clusters, len(X))
        for name in ("n_init", "max_iter"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        rng = np.random.default_rng(self.seed)
        best = None
        for _ in range(self.n_init):
            centers, labels, rounds = lloyd(X, kmeans_plus_plus(X, self.n_clusters, rng, self.n_local_trials), self.max_iter,
                                           self.tol)
            inertia = float(squared_distances(X, centers)[np.arange(len(X)), labels].sum())
            if best is None or inertia < best[0]:
                best = (inertia, centers, labels, rounds)
        self.inertia_, self.cluster_centers_, self.labels_, self.n_iter_ = best
        return self

    def predict(self, X) -> np.ndarray:
        """(n, d) -> (n,) index of the nearest centre."""
        return squared_distances(_as_matrix(X), self.cluster_centers_).argmin(1)

    def fit_predict(self, X) -> np.ndarray:
        return self.fit(X).labels_


__all__ = ["KMeans", "kmeans_plus_plus", "lloyd", "squared_distances"]
