"""Principal component analysis by the singular value decomposition.

Centre the data (subtract the mean of every column), then factor it:
``X - mean = U S V^T``. The rows of ``V^T`` are the **principal components**,
orthonormal directions ordered by how much of the data's variance lies along
each; the variance along component i is ``S_i^2 / (n - 1)``, and its share of
the total is the **explained-variance ratio**. Projecting onto the first k
components keeps as much variance as any k-dimensional linear map can.

A component's sign is arbitrary (``v`` and ``-v`` span the same line); this
module fixes it so that each component's largest entry (in absolute value) is
positive, which makes runs repeatable. scikit-learn's ``PCA`` computes the same
components, up to that sign.

Introduced in: chapter 9, Interpreting embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _as_matrix(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no rows")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return X


@dataclass
class PCA:
    """``PCA(k).fit(X)``; then ``transform`` projects onto the first k components.

    Attributes after ``fit``: ``mean_`` (d,), ``components_`` (k, d),
    ``explained_variance_`` (k,), ``explained_variance_ratio_`` (k,), ``singular_values_`` (k,).

    Introduced in: chapter 9, Interpreting embeddings.
    """

    n_components: int
    mean_: np.ndarray = field(init=False, repr=False)
    components_: np.ndarray = field(init=False, repr=False)
    explained_variance_: np.ndarray = field(init=False, repr=False)
    explained_variance_ratio_: np.ndarray = field(init=False, repr=False)
    singular_values_: np.ndarray = field(init=False, repr=False)

    def fit(self, X) -> PCA:
        X = _as_matrix(X)
        n, d = X.shape
        k = self.n_components
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= min(n, d):
            raise ValueError(f"n_components must be an integer in 1..min(n_samples, n_features) = {min(n, d)}, "
                             f"got {k!r}")
        if n < 2:
            raise ValueError("X needs at least 2 rows to have a variance")
        self.mean_ = X.mean(axis=0)  # (d,)
        _, S, Vt = np.linalg.svd(X - self.mean_, full_matrices=False)  # S (r,), Vt (r, d), r = min(n, d)
        biggest = np.argmax(np.abs(Vt), axis=1)  # (r,) where each component is largest
        Vt = Vt * np.sign(Vt[np.arange(len(Vt)), biggest])[:, None]  # that entry made positive
        variance = S**2 / (n - 1)  # (r,) variance along each component
        self.components_ = Vt[:k]  # (k, d)
        self.singular_values_ = S[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = variance[:k] / variance.sum()  # share of the *total* variance
        return self

    def transform(self, X) -> np.ndarray:
        """(n, d) -> (n, k): coordinates along the components."""
        X = _as_matrix(X)
        if X.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features; this PCA was fitted on {self.mean_.shape[0]}")
        return (X - self.mean_) @ self.components_.T

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, Z) -> np.ndarray:
        """(n, k) -> (n, d): the points the coordinates stand for (the data, if k keeps every direction)."""
        return np.asarray(Z, dtype=np.float64) @ self.components_ + self.mean_


__all__ = ["PCA"]
