"""The interpreting-embeddings exercise, solutions/09_embeddings/embeddings.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. A
wrong squared_distances costs points once: the tests of kmeans_plus_plus and lloyd put
the course's squared distances in its place. The other parts call no graded helper (the
tests of project use the course's PCA, not the student's). The tests here are this
exercise's own: the references the hidden tests use follow the rules the notebook states
(the random-number protocol of k-means++, the stopping and empty-cluster rules of Lloyd's
algorithm, scikit-learn's sign convention, BERTopic's rounding of A), and the visible
asserts alone already catch many wrong solutions.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from exercise_support import Exercise, from_template, run

ANSWERS = ["pca", "project", "squared_distances", "kmeans_plus_plus", "lloyd", "class_tfidf"]
SKIP = ("minilm",)  # the real MiniLM sentences: not graded, and the slowest cells

# ----------------------------------------------------------------------------- 1. pca

PCA = """
    def pca(X, k):
        X = {convert}
        n = X.shape[0]
        mean = {mean}
        _, S, Vt = np.linalg.svd({centred}, full_matrices=False)
        {sign}
        variances = {variances}
        return {result}
"""
PCA_RIGHT = dict(convert="np.asarray(X, dtype=np.float64)", mean="X.mean(axis=0)", centred="X - mean",
                 sign="Vt = Vt * np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(axis=1)])[:, None]",
                 variances="S**2 / (n - 1)", result="mean, Vt[:k], variances[:k], variances[:k] / variances.sum()")
PCA_BUGS = {
    "pca: no centring (the SVD of X itself)": dict(centred="X"),
    "pca: each row centred on its own mean": dict(mean="X.mean(axis=1, keepdims=True)"),
    "pca: the mean returned as (1, d)": dict(mean="X.mean(axis=0, keepdims=True)"),
    "pca: variances divided by n, not n - 1": dict(variances="S**2 / n"),
    "pca: standard deviations, not variances (S / sqrt(n - 1))": dict(variances="S / np.sqrt(n - 1)"),
    "pca: ratios over the kept components only": dict(
        result="mean, Vt[:k], variances[:k], variances[:k] / variances[:k].sum()"),
    "pca: ratios of the singular values, not of their squares": dict(
        result="mean, Vt[:k], variances[:k], S[:k] / S.sum()"),
    "pca: total variance with ddof=0 beside variances with n - 1": dict(
        result="mean, Vt[:k], variances[:k], variances[:k] / X.var(axis=0).sum()"),
    "pca: cumulative ratios": dict(result="mean, Vt[:k], variances[:k], np.cumsum(variances[:k]) / variances.sum()"),
    "pca: components as the columns of Vt (the wrong side)": dict(
        result="mean, Vt[:, :k].T, variances[:k], variances[:k] / variances.sum()"),
    "pca: components scaled by the singular values (loadings)": dict(
        result="mean, Vt[:k] * S[:k, None], variances[:k], variances[:k] / variances.sum()"),
    "pca: no sign rule (the SVD's signs)": dict(sign="pass"),
    "pca: sign rule on the first entry": dict(sign="Vt = Vt * np.sign(Vt[:, :1])"),
    "pca: sign rule on the largest signed entry": dict(
        sign="Vt = Vt * np.sign(Vt[np.arange(len(Vt)), Vt.argmax(axis=1)])[:, None]"),
    "pca: float32 data kept in float32": dict(convert="np.asarray(X)"),
    "pca: standardised columns (a PCA of the correlations)": dict(centred="(X - mean) / X.std(axis=0, ddof=1)"),
}
WRONG = from_template("pca", PCA, PCA_RIGHT, PCA_BUGS)
WRONG.update({
    "pca: components from U, the left singular vectors": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            mean = X.mean(axis=0)
            U, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
            U = U * np.sign(U[np.abs(U).argmax(axis=0), np.arange(U.shape[1])])
            variances = S**2 / (len(X) - 1)
            return mean, U.T[:k], variances[:k], variances[:k] / variances.sum()
    """),
    "pca: eigh's increasing order kept (the smallest components first)": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            mean = X.mean(axis=0)
            values, vectors = np.linalg.eigh(np.cov(X, rowvar=False))  # increasing
            comps = vectors.T[:k]
            comps = comps * np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])[:, None]
            return mean, comps, values[:k], values[:k] / values.sum()
    """),
    "pca: eigh of the uncentred X^T X / (n - 1)": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            values, vectors = np.linalg.eigh(X.T @ X / (len(X) - 1))
            values, vectors = values[::-1], vectors[:, ::-1]
            comps = vectors.T[:k]
            comps = comps * np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])[:, None]
            return X.mean(axis=0), comps, values[:k], values[:k] / values.sum()
    """),
    "pca: np.cov without rowvar=False (the points as variables)": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            values, vectors = np.linalg.eigh(np.cov(X))
            values, vectors = values[::-1], vectors[:, ::-1]
            comps = vectors.T[:k]
            comps = comps * np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])[:, None]
            return X.mean(axis=0), comps, values[:k], values[:k] / values.sum()
    """),
    "pca: centres X in place (X -= mean)": ("pca", """
        def pca(X, k):
            mean = X.mean(axis=0)
            X -= mean
            _, S, Vt = np.linalg.svd(X.astype(np.float64), full_matrices=False)
            Vt = Vt * np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(axis=1)])[:, None]
            variances = S**2 / (len(X) - 1)
            return mean.astype(np.float64), Vt[:k], variances[:k], variances[:k] / variances.sum()
    """),
    "pca: the total variance from the eigenvalues of k components (eigsh-style)": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            mean = X.mean(axis=0)
            values, vectors = np.linalg.eigh(np.cov(X, rowvar=False))
            values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
            comps = vectors.T * np.sign(vectors.T[np.arange(k), np.abs(vectors.T).argmax(axis=1)])[:, None]
            return mean, comps, values, values / values.sum()
    """),
    "pca: scikit-learn's PCA": ("pca", """
        from sklearn.decomposition import PCA as SkPCA

        def pca(X, k):
            model = SkPCA(k, svd_solver="full").fit(np.asarray(X, dtype=np.float64))
            return model.mean_, model.components_, model.explained_variance_, model.explained_variance_ratio_
    """),
    "pca: the package's PCA": ("pca", """
        from llmcourse.analysis import PCA as CoursePCA

        def pca(X, k):
            model = CoursePCA(k).fit(X)
            return model.mean_, model.components_, model.explained_variance_, model.explained_variance_ratio_
    """),
})

# ----------------------------------------------------------------------------- 2. project

PROJECT = """
    def project(X, mean, components):
        {body}
"""
PROJECT_BUGS = {
    "project: no centring": "return np.asarray(X, dtype=np.float64) @ components.T",
    "project: centred on the new points' own mean": (
        "X = np.asarray(X, dtype=np.float64)\n        return (X - X.mean(axis=0)) @ components.T"),
    "project: (k, n), components @ (X - mean).T": "return components @ (np.asarray(X, dtype=np.float64) - mean).T",
    "project: the reconstruction (n, d), not the coordinates": (
        "return (np.asarray(X, dtype=np.float64) - mean) @ components.T @ components"),
    "project: float32 points give float32 coordinates": (
        "return (X - mean.astype(X.dtype)) @ components.T.astype(X.dtype)"),
    "project: centres X in place": "X -= mean\n        return X.astype(np.float64) @ components.T",
    "project: whitened (each coordinate divided by the norm of its column)": (
        "Z = (np.asarray(X, dtype=np.float64) - mean) @ components.T\n        return Z / np.linalg.norm(Z, axis=0)"),
}
WRONG.update(from_template("project", PROJECT, {}, PROJECT_BUGS))

# ----------------------------------------------------------------------------- 3. squared_distances

DISTANCES = """
    def squared_distances(X, centers):
        X = np.asarray(X, dtype=np.float64)
        centers = np.asarray(centers, dtype=np.float64)
        {body}
"""
DISTANCE_BUGS = {
    "d2: Euclidean distances (the square root)": "return np.sqrt(((X[:, None, :] - centers[None]) ** 2).sum(-1))",
    "d2: (k, n), transposed": "return ((X[:, None, :] - centers[None]) ** 2).sum(-1).T",
    "d2: the expansion, not clipped at 0": (
        "return (X**2).sum(1)[:, None] - 2 * X @ centers.T + (centers**2).sum(1)[None, :]"),
    "d2: the expansion without the factor 2": (
        "return np.maximum((X**2).sum(1)[:, None] - X @ centers.T + (centers**2).sum(1)[None, :], 0)"),
    "d2: cosine distances": (
        "unit = lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)\n"
        "        return 1 - unit(X) @ unit(centers).T"),
    "d2: summed over the centres' axis, (n, d)": "return ((X[:, None, :] - centers[None]) ** 2).sum(1)",
    "d2: absolute differences (L1)": "return np.abs(X[:, None, :] - centers[None]).sum(-1)",
    "d2: the mean of the squared differences (divided by d)": "return ((X[:, None, :] - centers[None]) ** 2).mean(-1)",
    "d2: row by row, point i against centre i only": "return ((X[: len(centers)] - centers[: len(X)]) ** 2).sum(-1)",
}
WRONG.update(from_template("squared_distances", DISTANCES, {}, DISTANCE_BUGS))
WRONG["d2: float32 inputs kept in float32"] = ("squared_distances", """
    def squared_distances(X, centers):
        return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=-1)
""")

# ----------------------------------------------------------------------------- 4. kmeans_plus_plus

SEEDING = """
    def kmeans_plus_plus(X, k, rng):
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        chosen = [{first}]
        for _ in range(1, k):
            D2 = {weights}
            i = {draw}
            chosen.append(i)
        return {result}
"""
SEEDING_RIGHT = dict(first="rng.integers(n)", weights="squared_distances(X, X[chosen]).min(axis=1)",
                     draw="rng.choice(n, p=D2 / D2.sum())", result="X[chosen]")
SEEDING_BUGS = {
    "kpp: uniform draws (no D^2 weights)": dict(draw="rng.choice(n)"),
    "kpp: uniform among the points not chosen yet": dict(draw="rng.choice(n, p=(D2 > 0) / (D2 > 0).sum())"),
    "kpp: in proportion to D, not D^2": dict(draw="rng.choice(n, p=np.sqrt(D2) / np.sqrt(D2).sum())"),
    "kpp: in proportion to D^4": dict(draw="rng.choice(n, p=D2**2 / (D2**2).sum())"),
    "kpp: the farthest point (no random draw)": dict(draw="int(D2.argmax())"),
    "kpp: the distance to the first centre only": dict(weights="squared_distances(X, X[chosen[:1]])[:, 0]"),
    "kpp: the distance to the latest centre only": dict(weights="squared_distances(X, X[chosen[-1:]])[:, 0]"),
    "kpp: the sum of the squared distances to all chosen centres": dict(
        weights="squared_distances(X, X[chosen]).sum(axis=1)"),
    "kpp: the mean distance to the chosen centres, squared": dict(
        weights="np.sqrt(squared_distances(X, X[chosen])).mean(axis=1) ** 2"),
    "kpp: the first centre is row 0": dict(first="0"),
    "kpp: the first centre is the point nearest the mean": dict(
        first="int(((X - X.mean(axis=0)) ** 2).sum(axis=1).argmin())"),
    "kpp: the global np.random, not rng": dict(first="np.random.randint(n)", draw="np.random.choice(n, p=D2 / D2.sum())"),
    "kpp: a generator of its own, seeded 0 (rng ignored)": dict(
        first="(rng := np.random.default_rng(0)).integers(n)"),
    "kpp: the weights not normalised (rng.choice refuses them)": dict(draw="rng.choice(n, p=D2)"),
    "kpp: returns the row indices, not the points": dict(result="np.array(chosen)"),
    "kpp: centres sorted by row (np.unique)": dict(result="X[np.unique(chosen)]"),
    "kpp: one centre too many": dict(result="X[chosen + [rng.choice(n, p=D2 / D2.sum())]] if k > 1 else X[chosen + chosen]"),
    "kpp: an extra draw from rng after the last centre": dict(result="X[chosen + [rng.integers(n)]][:-1]"),
}
WRONG.update(from_template("kmeans_plus_plus", SEEDING, SEEDING_RIGHT, SEEDING_BUGS, field="draw"))
WRONG.update({
    "kpp: float32 data gives float32 centres": ("kmeans_plus_plus", """
        def kmeans_plus_plus(X, k, rng):
            n = len(X)
            chosen = [rng.integers(n)]
            for _ in range(1, k):
                D2 = squared_distances(X, X[chosen]).min(axis=1)
                chosen.append(rng.choice(n, p=D2 / D2.sum()))
            return X[chosen]
    """),
    "kpp: greedy k-means++ (2 + ln k candidates per step, as scikit-learn)": ("kmeans_plus_plus", """
        def kmeans_plus_plus(X, k, rng):
            X = np.asarray(X, dtype=np.float64)
            n = len(X)
            chosen = [rng.integers(n)]
            nearest = squared_distances(X, X[chosen])[:, 0]
            trials = 2 + int(np.log(k))
            for _ in range(1, k):
                candidates = rng.choice(n, size=trials, p=nearest / nearest.sum())
                after = np.minimum(nearest[None, :], squared_distances(X, X[candidates]).T)  # (trials, n)
                best = int(after.sum(axis=1).argmin())
                chosen.append(candidates[best])
                nearest = after[best]
            return X[chosen]
    """),
    "kpp: scikit-learn's kmeans_plusplus": ("kmeans_plus_plus", """
        from sklearn.cluster import kmeans_plusplus

        def kmeans_plus_plus(X, k, rng):
            centres, _ = kmeans_plusplus(np.asarray(X, dtype=np.float64), k, random_state=int(rng.integers(2**31)))
            return centres
    """),
    "kpp: the package's kmeans_plus_plus": ("kmeans_plus_plus", """
        from llmcourse.analysis.kmeans import kmeans_plus_plus as course_seeding

        def kmeans_plus_plus(X, k, rng):
            return course_seeding(X, k, rng, n_local_trials=1)
    """),
})

# ----------------------------------------------------------------------------- 5. lloyd

LLOYD = """
    def lloyd(X, centers, max_iter=100):
        X = np.asarray(X, dtype=np.float64)
        centers = {copy}
        rows = np.arange(len(X))
        for n_iter in range({rounds}):
            d2 = squared_distances(X, centers)
            labels = {assign}
            worst_first = {worst}
            new = np.empty_like(centers)
            n_empty = 0
            for j in range(len(centers)):
                members = labels == j
                if members.any():
                    new[j] = {update}
                else:
                    {empty}
            moved = not np.array_equal(new, centers)
            {store}
            if {stop}:
                break
        {final}
        return centers, labels, {n_iter}
"""
LLOYD_RIGHT = dict(
    copy="np.array(centers, dtype=np.float64)", rounds="1, max_iter + 1", assign="d2.argmin(axis=1)",
    worst='np.argsort(-d2[rows, labels], kind="stable")', update="X[members].mean(axis=0)",
    empty="new[j] = X[worst_first[n_empty]]\n                    n_empty += 1", store="centers = new", stop="not moved",
    final="labels = squared_distances(X, centers).argmin(axis=1)", n_iter="n_iter",
)
LLOYD_BUGS = {
    "lloyd: the update by the median": dict(update="np.median(X[members], axis=0)"),
    "lloyd: the update by the sum, not the mean": dict(update="X[members].sum(axis=0)"),
    "lloyd: an empty cluster gives NaN (the mean of no points)": dict(empty="new[j] = X[members].mean(axis=0)"),
    "lloyd: an empty cluster keeps its centre": dict(empty="new[j] = centers[j]"),
    "lloyd: an empty cluster moves to the first point": dict(empty="new[j] = X[0]"),
    "lloyd: an empty cluster moves to the last point": dict(empty="new[j] = X[-1]"),
    "lloyd: an empty cluster moves to the best-served point": dict(
        empty="new[j] = X[worst_first[::-1][n_empty]]\n                    n_empty += 1"),
    "lloyd: every empty cluster moves to the same farthest point": dict(empty="new[j] = X[worst_first[0]]"),
    "lloyd: an empty cluster moves to the point farthest from the data's mean": dict(
        empty="new[j] = X[np.argsort(-((X - X.mean(axis=0)) ** 2).sum(axis=1), kind='stable')[n_empty]]\n"
              "                    n_empty += 1"),
    "lloyd: an empty cluster moves to the point farthest from the empty centre": dict(
        empty="new[j] = X[np.argsort(-d2[:, j], kind='stable')[n_empty]]\n                    n_empty += 1"),
    "lloyd: never stops early (always max_iter rounds)": dict(stop="False"),
    "lloyd: stops after one round": dict(stop="True"),
    "lloyd: stops when a centre stops moving, not every centre": dict(
        stop="(new == centers).all(axis=1).any()"),
    "lloyd: the last round (which moved nothing) not counted": dict(n_iter="n_iter if moved else n_iter - 1"),
    "lloyd: n_iter counts from 0": dict(n_iter="n_iter - 1"),
    "lloyd: one round more than max_iter": dict(rounds="1, max_iter + 2"),
    "lloyd: one round fewer than max_iter": dict(rounds="1, max(max_iter, 2)"),
    "lloyd: labels of the last assign step, not of the final centres": dict(final="pass"),
    "lloyd: changes the starting centres in place": dict(
        copy="centers if centers.dtype == np.float64 else centers.astype(np.float64)",
        store="centers[...] = new"),
    "lloyd: ties to the highest index": dict(assign="len(centers) - 1 - d2[:, ::-1].argmin(axis=1)"),
    "lloyd: float32 starting centres kept in float32": dict(copy="np.array(centers)"),
}
WRONG.update(from_template("lloyd", LLOYD, LLOYD_RIGHT, LLOYD_BUGS))
WRONG.update({
    "lloyd: stops when the labels repeat (never in the first round)": ("lloyd", """
        def lloyd(X, centers, max_iter=100):
            X = np.asarray(X, dtype=np.float64)
            centers = np.array(centers, dtype=np.float64)
            previous = None
            for n_iter in range(1, max_iter + 1):
                d2 = squared_distances(X, centers)
                labels = d2.argmin(axis=1)
                worst_first = np.argsort(-d2[np.arange(len(X)), labels], kind="stable")
                new, n_empty = centers.copy(), 0
                for j in range(len(centers)):
                    if (labels == j).any():
                        new[j] = X[labels == j].mean(axis=0)
                    else:
                        new[j] = X[worst_first[n_empty]]
                        n_empty += 1
                centers = new
                if previous is not None and np.array_equal(labels, previous):
                    break
                previous = labels
            return centers, squared_distances(X, centers).argmin(axis=1), n_iter
    """),
    "lloyd: scikit-learn's KMeans from the given start": ("lloyd", """
        from sklearn.cluster import KMeans

        def lloyd(X, centers, max_iter=100):
            model = KMeans(len(centers), init=np.asarray(centers, dtype=np.float64), n_init=1, max_iter=max_iter, tol=0.0)
            model.fit(np.asarray(X, dtype=np.float64))
            return model.cluster_centers_, model.labels_, model.n_iter_
    """),
    "lloyd: the package's lloyd": ("lloyd", """
        from llmcourse.analysis.kmeans import lloyd as course_lloyd

        def lloyd(X, centers, max_iter=100):
            return course_lloyd(np.asarray(X, dtype=np.float64), np.asarray(centers, dtype=np.float64), max_iter, 0.0)
    """),
})

# ----------------------------------------------------------------------------- 6. class_tfidf

TFIDF = """
    def class_tfidf(counts):
        counts = {convert}
        sizes = counts.sum(axis=1)
        {check}
        f = {f}
        A = {A}
        tf = {tf}
        idf = {idf}
        return {result}
"""
TFIDF_RIGHT = dict(
    convert="np.asarray(counts, dtype=np.float64)",
    check='if (sizes == 0).any():\n            raise ValueError("a class without words")',
    tf="counts / sizes[:, None]", A="sizes.mean()", f="counts.sum(axis=0)",
    idf="np.log(1 + A / np.where(f > 0, f, 1.0))", result="tf * idf",
)
TFIDF_BUGS = {
    "ctfidf: the idf without the +1, log(A / f)": dict(idf="np.log(A / np.where(f > 0, f, 1.0))"),
    "ctfidf: A the total number of words (a sum, not a mean)": dict(A="sizes.sum()"),
    "ctfidf: A the mean over the words (total / V)": dict(A="counts.sum() / counts.shape[1]"),
    "ctfidf: A the mean count per cell": dict(A="counts.mean()"),
    "ctfidf: A rounded down to a whole number (as BERTopic's code)": dict(A="int(sizes.mean())"),
    "ctfidf: A the mean over the classes that hold the word": dict(
        A="(counts.sum(axis=0) / np.maximum((counts > 0).sum(axis=0), 1))"),
    "ctfidf: counts normalised over the wrong axis (column sums)": dict(tf="counts / np.where(f > 0, f, 1.0)[None, :]"),
    "ctfidf: tf not divided by |c| (raw counts)": dict(tf="counts"),
    "ctfidf: tf divided by the row's L2 norm": dict(tf="counts / np.linalg.norm(counts, axis=1, keepdims=True)"),
    "ctfidf: tf divided by the number of distinct words in the class": dict(
        tf="counts / (counts > 0).sum(axis=1, keepdims=True)"),
    "ctfidf: the square root of tf (BERTopic's reduce_frequent_words)": dict(tf="np.sqrt(counts / sizes[:, None])"),
    "ctfidf: f_t the number of classes holding t (a document frequency)": dict(f="(counts > 0).sum(axis=0)"),
    "ctfidf: the classic idf, log(C / df)": dict(
        idf="np.log(len(counts) / np.maximum((counts > 0).sum(axis=0), 1))"),
    "ctfidf: BM25-style idf": dict(idf="np.log(1 + (A - f + 0.5) / (f + 0.5))"),
    "ctfidf: log base 10": dict(idf="np.log10(1 + A / np.where(f > 0, f, 1.0))"),
    "ctfidf: a word in no class gives NaN": dict(idf="np.log(1 + A / f)"),
    "ctfidf: a class without words gives NaN (no ValueError)": dict(check="pass"),
    "ctfidf: a class without words gives zeros (no ValueError)": dict(
        check="pass", tf="counts / np.where(sizes > 0, sizes, 1.0)[:, None]"),
    "ctfidf: (V, C), transposed": dict(result="(tf * idf).T"),
    "ctfidf: counts normalised in place": dict(
        convert="counts if counts.dtype == np.float64 else counts.astype(np.float64)",
        tf="counts.__itruediv__(sizes[:, None])"),
    "ctfidf: integer counts give an integer tf (floor division)": dict(
        convert="np.asarray(counts)", tf="counts // sizes[:, None]"),
}
WRONG.update(from_template("class_tfidf", TFIDF, TFIDF_RIGHT, TFIDF_BUGS))
WRONG.update({
    "ctfidf: BERTopic's ClassTfidfTransformer": ("class_tfidf", """
        from scipy import sparse

        def class_tfidf(counts):
            from bertopic.vectorizers import ClassTfidfTransformer
            counts = np.asarray(counts, dtype=np.float64)
            if (counts.sum(axis=1) == 0).any():
                raise ValueError("a class without words")
            with np.errstate(divide="ignore"):
                return ClassTfidfTransformer().fit_transform(sparse.csr_matrix(counts)).toarray()
    """),
    "ctfidf: the package's class_tfidf": ("class_tfidf", """
        from llmcourse.analysis import class_tfidf as course_class_tfidf

        def class_tfidf(counts):
            return course_class_tfidf(counts)
    """),
})

# ----------------------------------------------------------------------------- correct alternatives

ALTERNATIVES = {
    "pca: eigh of the covariance matrix, reversed": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            mean = X.mean(axis=0)
            centred = X - mean
            values, vectors = np.linalg.eigh(centred.T @ centred / (len(X) - 1))  # increasing order
            values, vectors = values[::-1], vectors[:, ::-1]
            values = np.clip(values, 0, None)  # rounding can make the zero eigenvalues slightly negative
            comps = vectors.T[:k].copy()
            for row in comps:
                if row[np.argmax(np.abs(row))] < 0:
                    row *= -1
            return mean, comps, values[:k], values[:k] / np.trace(centred.T @ centred / (len(X) - 1))
    """),
    "pca: torch.linalg.svd, the total from the column variances": ("pca", """
        import torch

        def pca(X, k):
            X = torch.from_numpy(np.array(X, dtype=np.float64))
            mean = X.mean(dim=0)
            _, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
            sign = torch.sign(Vh.gather(1, Vh.abs().argmax(dim=1, keepdim=True)))  # (r, 1)
            Vh = Vh * sign
            variances = S**2 / (X.shape[0] - 1)
            total = X.var(dim=0, unbiased=True).sum()
            return mean.numpy(), Vh[:k].numpy(), variances[:k].numpy(), (variances[:k] / total).numpy()
    """),
    "pca: full_matrices=True, the variances of the coordinates": ("pca", """
        def pca(X, k):
            X = np.array(X, dtype=np.float64)
            mean = X.mean(axis=0)
            _, _, Vt = np.linalg.svd(X - mean, full_matrices=True)  # (d, d); the first k rows are the same
            comps = Vt[:k] * np.sign(Vt[np.arange(k), np.abs(Vt[:k]).argmax(axis=1)])[:, None]
            coords = (X - mean) @ comps.T  # (n, k)
            variances = coords.var(axis=0, ddof=1)
            total = ((X - mean) ** 2).sum() / (len(X) - 1)
            return mean, comps, variances, variances / total
    """),
    "pca: np.cov and eigh, one column made 2-D": ("pca", """
        def pca(X, k):
            X = np.asarray(X, dtype=np.float64)
            mean = X.mean(axis=0)
            cov = np.atleast_2d(np.cov(X, rowvar=False))  # (d, d); np.cov gives a 0-d array for one column
            values, vectors = np.linalg.eigh(cov)
            order = np.argsort(values)[::-1][:k]
            comps = vectors[:, order].T
            comps = comps * np.where(comps[np.arange(k), np.abs(comps).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
            return mean, comps, values[order], values[order] / np.trace(cov)
    """),
    "project: einsum": ("project", """
        def project(X, mean, components):
            return np.einsum("nd,kd->nk", np.asarray(X, dtype=np.float64) - mean, components)
    """),
    "project: a loop over the points, in torch": ("project", """
        import torch

        def project(X, mean, components):
            V, mu = torch.as_tensor(components, dtype=torch.float64), torch.as_tensor(mean, dtype=torch.float64)
            rows = [V @ (torch.as_tensor(x, dtype=torch.float64) - mu) for x in np.asarray(X)]
            return torch.stack(rows).numpy().reshape(len(rows), V.shape[0])
    """),
    "d2: the expansion clipped at 0": ("squared_distances", """
        def squared_distances(X, centers):
            X, C = np.asarray(X, dtype=np.float64), np.asarray(centers, dtype=np.float64)
            d2 = (X * X).sum(axis=1)[:, None] - 2.0 * X @ C.T + (C * C).sum(axis=1)[None, :]
            return np.clip(d2, 0.0, None)
    """),
    "d2: scipy's cdist": ("squared_distances", """
        from scipy.spatial.distance import cdist

        def squared_distances(X, centers):
            return cdist(np.asarray(X, dtype=np.float64), np.asarray(centers, dtype=np.float64), "sqeuclidean")
    """),
    "d2: a loop over the centres, in torch": ("squared_distances", """
        import torch

        def squared_distances(X, centers):
            X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
            cols = [((X - torch.as_tensor(np.asarray(c), dtype=torch.float64)) ** 2).sum(dim=1) for c in centers]
            return torch.stack(cols, dim=1).numpy() if cols else np.zeros((len(X), 0))
    """),
    "kpp: a Python loop, rng.choice over the rows themselves": ("kmeans_plus_plus", """
        def kmeans_plus_plus(X, k, rng):
            X = np.asarray(X, dtype=np.float64)
            centres = [X[rng.choice(len(X))]]  # rng.choice(n) draws what rng.integers(n) draws
            for _ in range(k - 1):
                nearest = np.array([min(((x - c) ** 2).sum() for c in centres) for x in X])
                centres.append(rng.choice(X, p=nearest / nearest.sum()))
            return np.array(centres)
    """),
    "kpp: torch distances, numpy draws": ("kmeans_plus_plus", """
        import torch

        def kmeans_plus_plus(X, k, rng):
            points = torch.as_tensor(np.asarray(X), dtype=torch.float64)
            n = points.shape[0]
            chosen = [int(rng.integers(n))]
            nearest = ((points - points[chosen[0]]) ** 2).sum(dim=1)  # (n,)
            for _ in range(k - 1):
                p = (nearest / nearest.sum()).numpy()
                i = int(rng.choice(n, p=p))
                chosen.append(i)
                nearest = torch.minimum(nearest, ((points - points[i]) ** 2).sum(dim=1))
            return points[chosen].numpy().copy()
    """),
    "lloyd: a one-hot matrix for the means, np.lexsort for the worst-served": ("lloyd", """
        def lloyd(X, centers, max_iter=100):
            X = np.asarray(X, dtype=np.float64)
            C = np.asarray(centers, dtype=np.float64).copy()
            k = len(C)
            for n_iter in range(1, max_iter + 1):
                d2 = squared_distances(X, C)
                labels = np.argmin(d2, axis=1)
                onehot = np.eye(k)[labels]  # (n, k)
                sizes = onehot.sum(axis=0)
                new = np.where(sizes[:, None] > 0, onehot.T @ X / np.maximum(sizes, 1)[:, None], 0.0)
                served = d2[np.arange(len(X)), labels]
                order = np.lexsort((np.arange(len(X)), -served))  # farthest first, then the lower index
                empty = np.flatnonzero(sizes == 0)
                new[empty] = X[order[: len(empty)]]
                done = np.array_equal(new, C)
                C = new
                if done:
                    break
            return C, np.argmin(squared_distances(X, C), axis=1), n_iter
    """),
    "lloyd: plain Python lists of members, Euclidean distances": ("lloyd", """
        def lloyd(X, centers, max_iter=100):
            X = np.asarray(X, dtype=np.float64)
            C = [np.array(c, dtype=np.float64) for c in centers]
            rounds = 0
            while rounds < max_iter:
                rounds += 1
                dist = np.linalg.norm(X[:, None, :] - np.array(C)[None], axis=-1)  # the same argmin as squared
                labels = dist.argmin(axis=1)
                groups = {j: [] for j in range(len(C))}
                for i, j in enumerate(labels):
                    groups[j].append(i)
                own = dist[np.arange(len(X)), labels]
                worst = sorted(range(len(X)), key=lambda i: -own[i])  # sorted() is stable
                new = []
                for j in range(len(C)):
                    if groups[j]:
                        new.append(X[groups[j]].mean(axis=0))
                    else:
                        new.append(X[worst.pop(0)].copy())
                still = all(np.array_equal(a, b) for a, b in zip(new, C))
                C = new
                if still:
                    break
            C = np.array(C)
            return C, np.linalg.norm(X[:, None, :] - C[None], axis=-1).argmin(axis=1), rounds
    """),
    "lloyd: torch, scatter_add_ for the sums": ("lloyd", """
        import torch

        def lloyd(X, centers, max_iter=100):
            points = torch.as_tensor(np.asarray(X), dtype=torch.float64)
            C = torch.as_tensor(np.array(centers), dtype=torch.float64).clone()
            n, k = points.shape[0], C.shape[0]
            for n_iter in range(1, max_iter + 1):
                d2 = torch.as_tensor(squared_distances(points.numpy(), C.numpy()))
                labels = d2.argmin(dim=1)  # ties: the first minimum
                sums = torch.zeros_like(C).index_add_(0, labels, points)
                sizes = torch.bincount(labels, minlength=k)
                new = sums / sizes.clamp(min=1)[:, None].to(torch.float64)
                served = d2[torch.arange(n), labels]
                order = torch.argsort(-served, stable=True)
                empty = torch.nonzero(sizes == 0).flatten()
                new[empty] = points[order[: len(empty)]]
                same = torch.equal(new, C)
                C = new
                if same:
                    break
            final = torch.as_tensor(squared_distances(points.numpy(), C.numpy())).argmin(dim=1)
            return C.numpy(), final.numpy(), n_iter
    """),
    "ctfidf: loops with math.log": ("class_tfidf", """
        import math

        def class_tfidf(counts):
            rows = np.asarray(counts, dtype=np.float64).tolist()
            sizes = [sum(r) for r in rows]
            if 0 in sizes:
                raise ValueError(f"class {sizes.index(0)} has no words")
            A = sum(sizes) / len(rows)
            f = [sum(col) for col in zip(*rows)]
            out = np.zeros((len(rows), len(f)))
            for c, row in enumerate(rows):
                for t, x in enumerate(row):
                    if f[t] > 0:
                        out[c, t] = x / sizes[c] * math.log(1 + A / f[t])
            return out
    """),
    "ctfidf: 0 * inf patched with nan_to_num, log1p": ("class_tfidf", """
        def class_tfidf(counts):
            counts = np.array(counts, dtype=np.float64)
            sizes = counts.sum(axis=1, keepdims=True)  # (C, 1)
            if np.any(sizes == 0):
                raise ValueError("every class needs at least one word")
            with np.errstate(divide="ignore", invalid="ignore"):
                weights = counts / sizes * np.log1p(sizes.mean() / counts.sum(axis=0))
            return np.nan_to_num(weights, nan=0.0)
    """),
    "ctfidf: torch": ("class_tfidf", """
        import torch

        def class_tfidf(counts):
            c = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
            size = c.sum(dim=1, keepdim=True)
            if (size == 0).any():
                raise ValueError("empty class")
            f = c.sum(dim=0)
            idf = torch.where(f > 0, torch.log(1 + size.mean() / f.clamp(min=1e-300)), torch.zeros_like(f))
            return (c / size * idf).numpy()
    """),
}

# squared_distances mistakes that kmeans_plus_plus and lloyd would otherwise pay for twice; mistakes in parts that
# the later cells never call, which must cost their own cell only
HELPER_BUGS = [
    "d2: Euclidean distances (the square root)",
    "d2: (k, n), transposed",
    "d2: the expansion without the factor 2",
    "d2: cosine distances",
    "d2: float32 inputs kept in float32",
    "pca: no centring (the SVD of X itself)",
    "project: no centring",
    "kpp: in proportion to D, not D^2",
    "lloyd: an empty cluster gives NaN (the mean of no points)",
]

EXERCISE = Exercise(
    folder="09_embeddings", notebook="embeddings", answers=ANSWERS, points=(17, 17),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS, skip=SKIP,
)


def _visible_only(nb):
    """The notebook as a student sees it, solutions kept: the hidden tests removed."""
    from nbgrader.preprocessors import ClearHiddenTests

    nb, _ = ClearHiddenTests().preprocess(copy.deepcopy(nb), {})
    return nb


# Wrong solutions that the visible asserts alone already catch (86 of the 110): the visible tests are a real signal.
# The others (the shape of the mean, float32 inputs, changes in place, D^4 and greedy draws, an extra draw, the
# rarer empty-cluster and stopping rules, A rounded down, the ready-made versions) only the hidden tests catch.
VISIBLE_CATCHES = [
    "pca: no centring (the SVD of X itself)",
    "pca: each row centred on its own mean",
    "pca: variances divided by n, not n - 1",
    "pca: standard deviations, not variances (S / sqrt(n - 1))",
    "pca: ratios over the kept components only",
    "pca: ratios of the singular values, not of their squares",
    "pca: total variance with ddof=0 beside variances with n - 1",
    "pca: cumulative ratios",
    "pca: components as the columns of Vt (the wrong side)",
    "pca: components scaled by the singular values (loadings)",
    "pca: no sign rule (the SVD's signs)",
    "pca: sign rule on the first entry",
    "pca: sign rule on the largest signed entry",
    "pca: float32 data kept in float32",
    "pca: standardised columns (a PCA of the correlations)",
    "pca: components from U, the left singular vectors",
    "pca: eigh's increasing order kept (the smallest components first)",
    "pca: eigh of the uncentred X^T X / (n - 1)",
    "pca: np.cov without rowvar=False (the points as variables)",
    "pca: centres X in place (X -= mean)",
    "pca: the total variance from the eigenvalues of k components (eigsh-style)",
    "project: no centring",
    "project: centred on the new points' own mean",
    "project: (k, n), components @ (X - mean).T",
    "project: the reconstruction (n, d), not the coordinates",
    "project: whitened (each coordinate divided by the norm of its column)",
    "d2: Euclidean distances (the square root)",
    "d2: (k, n), transposed",
    "d2: the expansion, not clipped at 0",
    "d2: the expansion without the factor 2",
    "d2: cosine distances",
    "d2: summed over the centres' axis, (n, d)",
    "d2: absolute differences (L1)",
    "d2: the mean of the squared differences (divided by d)",
    "d2: row by row, point i against centre i only",
    "d2: float32 inputs kept in float32",
    "kpp: uniform draws (no D^2 weights)",
    "kpp: uniform among the points not chosen yet",
    "kpp: in proportion to D, not D^2",
    "kpp: the distance to the first centre only",
    "kpp: the distance to the latest centre only",
    "kpp: the first centre is row 0",
    "kpp: the first centre is the point nearest the mean",
    "kpp: the global np.random, not rng",
    "kpp: a generator of its own, seeded 0 (rng ignored)",
    "kpp: the weights not normalised (rng.choice refuses them)",
    "kpp: returns the row indices, not the points",
    "kpp: centres sorted by row (np.unique)",
    "kpp: one centre too many",
    "kpp: scikit-learn's kmeans_plusplus",
    "lloyd: the update by the median",
    "lloyd: the update by the sum, not the mean",
    "lloyd: an empty cluster gives NaN (the mean of no points)",
    "lloyd: an empty cluster keeps its centre",
    "lloyd: an empty cluster moves to the first point",
    "lloyd: an empty cluster moves to the best-served point",
    "lloyd: an empty cluster moves to the point farthest from the empty centre",
    "lloyd: never stops early (always max_iter rounds)",
    "lloyd: stops after one round",
    "lloyd: stops when a centre stops moving, not every centre",
    "lloyd: the last round (which moved nothing) not counted",
    "lloyd: n_iter counts from 0",
    "lloyd: one round more than max_iter",
    "lloyd: labels of the last assign step, not of the final centres",
    "lloyd: changes the starting centres in place",
    "lloyd: ties to the highest index",
    "lloyd: scikit-learn's KMeans from the given start",
    "ctfidf: the idf without the +1, log(A / f)",
    "ctfidf: A the total number of words (a sum, not a mean)",
    "ctfidf: A the mean over the words (total / V)",
    "ctfidf: A the mean count per cell",
    "ctfidf: A the mean over the classes that hold the word",
    "ctfidf: counts normalised over the wrong axis (column sums)",
    "ctfidf: tf not divided by |c| (raw counts)",
    "ctfidf: tf divided by the row's L2 norm",
    "ctfidf: tf divided by the number of distinct words in the class",
    "ctfidf: the square root of tf (BERTopic's reduce_frequent_words)",
    "ctfidf: f_t the number of classes holding t (a document frequency)",
    "ctfidf: the classic idf, log(C / df)",
    "ctfidf: BM25-style idf",
    "ctfidf: log base 10",
    "ctfidf: a word in no class gives NaN",
    "ctfidf: a class without words gives NaN (no ValueError)",
    "ctfidf: a class without words gives zeros (no ValueError)",
    "ctfidf: (V, C), transposed",
    "ctfidf: integer counts give an integer tf (floor division)",
]


@pytest.mark.parametrize("name", VISIBLE_CATCHES)
def test_visible_asserts_catch_wrong_solution(name):
    answer_id, code = EXERCISE.wrong[name]
    results = run(_visible_only(EXERCISE.load()), replace={answer_id: code}, skip=SKIP, stop_after=f"test_{answer_id}")
    assert results[answer_id] is None, results[answer_id]
    assert results[f"test_{answer_id}"] is not None, f"the visible asserts let '{name}' pass"


def _plain_kmeans_plus_plus(X, k, rng):
    """The notebook's protocol, written out: rng.integers(n), then one rng.choice(n, p=D^2 / sum D^2) per centre."""
    n = len(X)
    chosen = [int(rng.integers(n))]
    for _ in range(1, k):
        d2 = ((X[:, None, :] - X[chosen][None, :, :]) ** 2).sum(-1).min(1)
        chosen.append(int(rng.choice(n, p=d2 / d2.sum())))
    return chosen


def test_the_random_number_protocol_is_the_packages():
    """The course's kmeans_plus_plus with one candidate per step draws exactly as the notebook says, and the two
    calls the notebook names as equivalent draw the same numbers."""
    from llmcourse.analysis.kmeans import kmeans_plus_plus

    g = np.random.default_rng(0)
    for n, d, k in [(5, 1, 3), (30, 2, 4), (80, 5, 9)]:
        X = g.normal(size=(n, d)) * 3
        for seed in range(20):
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            centres = kmeans_plus_plus(X, k, a, n_local_trials=1)
            assert np.array_equal(centres, X[_plain_kmeans_plus_plus(X, k, b)])
            assert a.bit_generator.state == b.bit_generator.state  # the same draws, nothing more
    p = np.array([0.1, 0.2, 0.3, 0.4])
    for seed in range(50):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert a.integers(7) == b.choice(7)
        assert a.choice(4, p=p) == b.choice(4, p=p, size=1)[0]  # the package draws with size=1
        assert a.bit_generator.state == b.bit_generator.state


def test_the_references_follow_the_notebook():
    """The package's versions, which the hidden tests compare with, give the notebook's worked examples."""
    from llmcourse.analysis import PCA, class_tfidf
    from llmcourse.analysis.kmeans import lloyd

    model = PCA(2).fit(np.array([[6.0, 5.0], [4.0, 5.0], [5.0, 7.0], [5.0, 3.0]]))
    np.testing.assert_allclose(model.components_, [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(model.explained_variance_, [8 / 3, 2 / 3])
    np.testing.assert_allclose(model.explained_variance_ratio_, [0.8, 0.2])
    np.testing.assert_allclose(PCA(1).fit(np.array([[6.0, 5.0], [4.0, 5.0], [5.0, 7.0], [5.0, 3.0]])).explained_variance_ratio_,
                               [0.8])
    centres, labels, rounds = lloyd(np.array([[0.0], [1.0], [4.0], [10.0]]), np.array([[0.4], [100.0], [2.0]]), 100, 0.0)
    assert centres[:, 0].tolist() == [0.5, 10.0, 4.0] and labels.tolist() == [0, 0, 2, 1] and rounds == 3
    centres, labels, rounds = lloyd(np.array([[0.0], [1.0], [10.0], [11.0]]), np.array([[0.0], [1.0]]), 100, 0.0)
    assert centres[:, 0].tolist() == [0.5, 10.5] and labels.tolist() == [0, 0, 1, 1] and rounds == 3
    centres, labels, rounds = lloyd(np.array([[0.0], [2.0], [10.0], [12.0]]), np.array([[1.0], [11.0]]), 100, 0.0)
    assert rounds == 1  # already converged: the first round leaves the centres where they are
    W = class_tfidf(np.array([[4, 0, 2], [0, 6, 2]]))
    np.testing.assert_allclose(W, [[0.674, 0, 0.337], [0, 0.580, 0.253]], atol=5e-4)  # the notebook's table


def test_scikit_learn_turns_components_as_the_notebook_says():
    """The hidden tests hold scikit-learn's PCA to the sign rule of the notebook: its largest entry is positive."""
    from sklearn.decomposition import PCA

    g = np.random.default_rng(1)
    for n, d in [(30, 5), (6, 20), (50, 50)]:
        V = PCA(min(n - 1, d), svd_solver="full").fit(g.normal(size=(n, d)) @ g.normal(size=(d, d))).components_
        assert (V[np.arange(len(V)), np.abs(V).argmax(axis=1)] > 0).all()


def test_bertopic_rounds_the_mean_down_and_otherwise_agrees():
    """What the notebook says of BERTopic: A is rounded down to a whole number, and with a whole mean its
    ClassTfidfTransformer gives the course's weights (the hidden tests load it the same way, from its file)."""
    import importlib.util
    import os

    from scipy import sparse

    from llmcourse.analysis import class_tfidf

    folder = importlib.util.find_spec("bertopic").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("_ctfidf_for_tests", os.path.join(folder, "vectorizers", "_ctfidf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    whole = np.array([[4, 0, 2], [0, 6, 2]])  # A = 7
    ref = module.ClassTfidfTransformer().fit_transform(sparse.csr_matrix(whole)).toarray()
    np.testing.assert_allclose(class_tfidf(whole), ref, atol=1e-14)
    broken = np.array([[4, 0, 2], [0, 6, 3]])  # A = 7.5, which BERTopic takes as 7
    ref = module.ClassTfidfTransformer().fit_transform(sparse.csr_matrix(broken)).toarray()
    sizes = broken.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ref, broken / sizes * np.log(1 + 7 / broken.sum(axis=0)), atol=1e-14)
    assert not np.allclose(ref, class_tfidf(broken))
