"""The ethics exercise, solutions/10_ethics/ethics.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. A
wrong association costs points once: the tests of weat_effect_size and weat_p_value put
the course's association in its place. The hidden tests compare every part with the
package's references (llmcourse.ethics): the p-value exactly wherever every split can be
tried, and within a band of the exact value where the test draws random splits, so that
any correct way of drawing them earns full marks. The tests here are this exercise's own:
the references follow the rules and the worked examples of the notebook, and the binning
shortcuts the notebook allows agree with the reference on the edges the hidden tests use.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from exercise_support import Exercise, from_template

ANSWERS = ["association", "weat_effect_size", "weat_p_value", "exposure", "expected_calibration_error"]

# ----------------------------------------------------------------------------- 1. association

ASSOCIATION = """
    def association(W, A, B):
        W, A, B = (np.asarray(M, dtype=np.float64) for M in (W, A, B))
        {normalise}
        return {result}
"""
NORMALISE = ("W = W / np.linalg.norm(W, axis={axis}, keepdims=True)\n"
             "        A = A / np.linalg.norm(A, axis={axis}, keepdims=True)\n"
             "        B = B / np.linalg.norm(B, axis={axis}, keepdims=True)")
ASSOCIATION_RIGHT = dict(normalise=NORMALISE.format(axis=1), result="(W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)")
ASSOCIATION_BUGS = {
    "association: dot products, not cosines": dict(normalise="pass"),
    "association: only W normalised": dict(normalise="W = W / np.linalg.norm(W, axis=1, keepdims=True)"),
    "association: only A and B normalised": dict(normalise=NORMALISE.format(axis=1).split("\n", 1)[1].strip()),
    "association: the columns normalised (axis=0)": dict(normalise=NORMALISE.format(axis=0)),
    "association: mean over the wrong axis": dict(result="(W @ A.T).mean(axis=0) - (W @ B.T).mean(axis=0)"),
    "association: sums, not means": dict(result="(W @ A.T).sum(axis=1) - (W @ B.T).sum(axis=1)"),
    "association: B minus A": dict(result="(W @ B.T).mean(axis=1) - (W @ A.T).mean(axis=1)"),
    "association: cosine distances (1 - cos)": dict(result="(1 - W @ A.T).mean(axis=1) - (1 - W @ B.T).mean(axis=1)"),
    "association: cosine with the mean of the unnormalised attribute vectors": dict(
        normalise="W = W / np.linalg.norm(W, axis=1, keepdims=True)",
        result="W @ (A.mean(axis=0) / np.linalg.norm(A.mean(axis=0))) - W @ (B.mean(axis=0) / np.linalg.norm(B.mean(axis=0)))"),
    "association: the mean of A and B together for the second term": dict(
        result="(W @ A.T).mean(axis=1) - (W @ np.concatenate([A, B]).T).mean(axis=1)"),
    "association: computed in float32": dict(
        normalise=NORMALISE.format(axis=1) + "\n        W, A, B = W.astype(np.float32), A.astype(np.float32), B.astype(np.float32)"),
}
WRONG = from_template("association", ASSOCIATION, ASSOCIATION_RIGHT, ASSOCIATION_BUGS)
WRONG.update({
    "association: normalises the caller's arrays in place": ("association", """
        def association(W, A, B):
            W, A, B = (np.asarray(M, dtype=np.float64) for M in (W, A, B))
            W /= np.linalg.norm(W, axis=1, keepdims=True)
            A /= np.linalg.norm(A, axis=1, keepdims=True)
            B /= np.linalg.norm(B, axis=1, keepdims=True)
            return (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)
    """),
    "association: one cosine per attribute pair, A[i] with B[i] (zip)": ("association", """
        def association(W, A, B):
            W, A, B = (np.asarray(M, dtype=np.float64) for M in (W, A, B))
            unit = lambda M: M / np.linalg.norm(M, axis=1, keepdims=True)
            W, A, B = unit(W), unit(A), unit(B)
            return np.array([np.mean([w @ a - w @ b for a, b in zip(A, B)]) for w in W])
    """),
    "association: the package's function": ("association", """
        from llmcourse.ethics import association
    """),
    "association: the package's function through a wrapper": ("association", """
        import llmcourse.ethics as _ethics

        def association(W, A, B):
            return _ethics.association(W, A, B)
    """),
})

# ----------------------------------------------------------------------------- 2. effect size

EFFECT = """
    def weat_effect_size(X, Y, A, B):
        sx = association(X, A, B)
        sy = association(Y, A, B)
        spread = {spread}
        return float(({numerator}) / spread)
"""
EFFECT_RIGHT = dict(spread="np.concatenate([sx, sy]).std(ddof=1)", numerator="sx.mean() - sy.mean()")
EFFECT_BUGS = {
    "effect size: the population standard deviation (ddof=0)": dict(spread="np.concatenate([sx, sy]).std()"),
    "effect size: the pooled standard deviation within the two sets": dict(
        spread="np.sqrt((sx.var(ddof=1) + sy.var(ddof=1)) / 2)"),
    "effect size: the mean of the two sets' standard deviations": dict(spread="(sx.std() + sy.std()) / 2"),
    "effect size: the standard deviation of X alone": dict(spread="sx.std(ddof=1)"),
    "effect size: the variance, not the standard deviation": dict(spread="np.concatenate([sx, sy]).var(ddof=1)"),
    "effect size: sums, not means": dict(numerator="sx.sum() - sy.sum()"),
    "effect size: Y minus X": dict(numerator="sy.mean() - sx.mean()"),
    "effect size: its absolute value": dict(numerator="abs(sx.mean() - sy.mean())"),
    "effect size: medians, not means": dict(numerator="np.median(sx) - np.median(sy)"),
    "effect size: the mean over X and Y together in the numerator": dict(
        numerator="sx.mean() - np.concatenate([sx, sy]).mean()"),
}
WRONG.update(from_template("weat_effect_size", EFFECT, EFFECT_RIGHT, EFFECT_BUGS))
WRONG.update({
    "effect size: dot products, not association": ("weat_effect_size", """
        def weat_effect_size(X, Y, A, B):
            s = lambda M: (M @ A.T).mean(axis=1) - (M @ B.T).mean(axis=1)
            sx, sy = s(X), s(Y)
            return float((sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1))
    """),
    "effect size: the package's function": ("weat_effect_size", """
        from llmcourse.ethics import effect_size as weat_effect_size
    """),
    "effect size: the package's weat through a wrapper": ("weat_effect_size", """
        from llmcourse.ethics import bias as _bias

        def weat_effect_size(X, Y, A, B):
            return _bias.weat(X, Y, A, B, n_permutations=1).effect_size
    """),
})

# ----------------------------------------------------------------------------- 3. p-value

P_VALUE = """
    def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        s = association(np.concatenate([X, Y]), A, B)
        n, n_x = len(s), len(X)
        total = s.sum()
        observed = s[:n_x].sum() - s[n_x:].sum()
        n_splits = math.comb(n, n_x)
        exact = {exact}
        if exact:
            parts = np.array(list(itertools.combinations(range(n), {size})))
            stats = 2 * s[parts].sum(axis=1) - total
        else:
            rng = np.random.default_rng({seed})
            stats = {sampled}
        if alternative == "greater":
            count = np.count_nonzero({greater})
        else:
            count = np.count_nonzero({two_sided})
        return {p}
"""
P_VALUE_RIGHT = dict(
    exact="n_splits <= n_permutations", size="n_x", seed="seed",
    sampled="2 * s[np.argsort(rng.random((n_permutations, n)), axis=1)[:, :n_x]].sum(axis=1) - total",
    greater="stats >= observed - 1e-9", two_sided="np.abs(stats) >= abs(observed) - 1e-9",
    p="count / n_splits if exact else (count + 1) / (n_permutations + 1)",
)
P_VALUE_BUGS = {
    "p-value: always one-sided (two-sided asked)": dict(two_sided="stats >= observed - 1e-9"),
    "p-value: always two-sided (one-sided asked)": dict(greater="np.abs(stats) >= abs(observed) - 1e-9"),
    "p-value: 'greater' counts S' <= S": dict(greater="stats <= observed + 1e-9"),
    "p-value: two-sided counts S' <= -|S| only": dict(two_sided="stats <= -abs(observed) + 1e-9"),
    "p-value: only the splits strictly more extreme": dict(
        greater="stats > observed + 1e-9", two_sided="np.abs(stats) > abs(observed) + 1e-9"),
    "p-value: the observed split not counted (exact)": dict(
        p="(count - 1) / n_splits if exact else (count + 1) / (n_permutations + 1)"),
    "p-value: the observed split not counted (exact, out of C - 1)": dict(
        p="(count - 1) / (n_splits - 1) if exact else (count + 1) / (n_permutations + 1)"),
    "p-value: no +1 for the observed split (sampled)": dict(p="count / n_splits if exact else count / n_permutations"),
    "p-value: +1 in the numerator only (sampled)": dict(p="count / n_splits if exact else (count + 1) / n_permutations"),
    "p-value: (count + 1) / (C + 1) in the exact test too": dict(
        p="(count + 1) / (n_splits + 1) if exact else (count + 1) / (n_permutations + 1)"),
    "p-value: exact only with fewer splits than n_permutations": dict(exact="n_splits < n_permutations"),
    "p-value: always sampled": dict(exact="False"),
    "p-value: X' of |Y| words": dict(
        size="n - n_x", sampled="2 * s[np.argsort(rng.random((n_permutations, n)), axis=1)[:, :n - n_x]].sum(axis=1) - total"),
    "p-value: each word to X' with probability 1/2 (sampled)": dict(
        sampled="np.array([s[m].sum() - s[~m].sum() for m in rng.random((n_permutations, n)) < 0.5])"),
    "p-value: X' drawn with replacement (sampled)": dict(
        sampled="np.array([2 * s[np.unique(rng.integers(0, n, n_x))].sum() - total for _ in range(n_permutations)])"),
    "p-value: every word of X' drawn with replacement, duplicates summed (sampled)": dict(
        sampled="2 * s[rng.integers(0, n, (n_permutations, n_x))].sum(axis=1) - total"),
    "p-value: the seed ignored (np.random.default_rng())": dict(seed=""),
    "p-value: always the seed 0": dict(seed="0"),
}
WRONG.update(from_template("weat_p_value", P_VALUE, P_VALUE_RIGHT, P_VALUE_BUGS))
WRONG.update({
    "p-value: two-sided as twice the one-sided p-value": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            s = association(np.concatenate([X, Y]), A, B)
            n, n_x = len(s), len(X)
            observed = s[:n_x].sum() - s[n_x:].sum()
            n_splits = math.comb(n, n_x)
            if n_splits <= n_permutations:
                parts = np.array(list(itertools.combinations(range(n), n_x)))
            else:
                rng = np.random.default_rng(seed)
                parts = np.argsort(rng.random((n_permutations, n)), axis=1)[:, :n_x]
            stats = 2 * s[parts].sum(axis=1) - s.sum()
            high = np.count_nonzero(stats >= observed - 1e-9)
            low = np.count_nonzero(stats <= observed + 1e-9)
            if n_splits <= n_permutations:
                p_high, p_low = high / n_splits, low / n_splits
            else:
                p_high, p_low = (high + 1) / (n_permutations + 1), (low + 1) / (n_permutations + 1)
            return p_high if alternative == "greater" else min(1.0, 2 * min(p_high, p_low))
    """),
    "p-value: the difference of the means as the statistic": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            s = association(np.concatenate([X, Y]), A, B)
            n, n_x = len(s), len(X)
            mask = np.zeros(n, dtype=bool)
            mask[:n_x] = True
            masks = [mask]
            n_splits = math.comb(n, n_x)
            if n_splits <= n_permutations:
                masks = [np.isin(np.arange(n), c) for c in itertools.combinations(range(n), n_x)]
            else:
                rng = np.random.default_rng(seed)
                masks = [np.isin(np.arange(n), rng.permutation(n)[:n_x]) for _ in range(n_permutations)]
            observed = s[:n_x].mean() - s[n_x:].mean()
            stats = np.array([s[m].mean() - s[~m].mean() for m in masks])
            if alternative == "greater":
                count = np.count_nonzero(stats >= observed - 1e-9)
            else:
                count = np.count_nonzero(np.abs(stats) >= abs(observed) - 1e-9)
            return count / n_splits if n_splits <= n_permutations else (count + 1) / (n_permutations + 1)
    """),
    "p-value: every subset of every size (exact)": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            s = association(np.concatenate([X, Y]), A, B)
            n, n_x = len(s), len(X)
            observed = s[:n_x].sum() - s[n_x:].sum()
            if 2**n <= n_permutations:
                masks = (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1  # (2^n, n): every subset
                stats = np.where(masks, s, -s).sum(axis=1)
            else:
                rng = np.random.default_rng(seed)
                parts = np.argsort(rng.random((n_permutations, n)), axis=1)[:, :n_x]
                stats = 2 * s[parts].sum(axis=1) - s.sum()
            if alternative == "greater":
                count = np.count_nonzero(stats >= observed - 1e-9)
            else:
                count = np.count_nonzero(np.abs(stats) >= abs(observed) - 1e-9)
            return count / len(stats) if 2**n <= n_permutations else (count + 1) / (n_permutations + 1)
    """),
    "p-value: the attribute words re-split, not the targets": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            AB = np.concatenate([A, B])
            n, n_a = len(AB), len(A)
            S = lambda A_, B_: association(X, A_, B_).sum() - association(Y, A_, B_).sum()
            observed = S(A, B)
            n_splits = math.comb(n, n_a)
            if n_splits <= n_permutations:
                parts = list(itertools.combinations(range(n), n_a))
            else:
                rng = np.random.default_rng(seed)
                parts = [rng.permutation(n)[:n_a] for _ in range(n_permutations)]
            stats = np.array([S(AB[list(c)], np.delete(AB, list(c), axis=0)) for c in parts])
            if alternative == "greater":
                count = np.count_nonzero(stats >= observed - 1e-9)
            else:
                count = np.count_nonzero(np.abs(stats) >= abs(observed) - 1e-9)
            return count / n_splits if n_splits <= n_permutations else (count + 1) / (n_permutations + 1)
    """),
    "p-value: dot products, not association": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            W = np.concatenate([X, Y])
            s = (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)
            n, n_x = len(s), len(X)
            observed = s[:n_x].sum() - s[n_x:].sum()
            n_splits = math.comb(n, n_x)
            if n_splits <= n_permutations:
                parts = np.array(list(itertools.combinations(range(n), n_x)))
            else:
                rng = np.random.default_rng(seed)
                parts = np.argsort(rng.random((n_permutations, n)), axis=1)[:, :n_x]
            stats = 2 * s[parts].sum(axis=1) - s.sum()
            if alternative == "greater":
                count = np.count_nonzero(stats >= observed - 1e-9)
            else:
                count = np.count_nonzero(np.abs(stats) >= abs(observed) - 1e-9)
            return count / n_splits if n_splits <= n_permutations else (count + 1) / (n_permutations + 1)
    """),
    "p-value: scipy.stats.permutation_test": ("weat_p_value", """
        from scipy import stats as _stats

        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            sx, sy = association(X, A, B), association(Y, A, B)
            result = _stats.permutation_test((sx, sy), lambda a, b: a.sum() - b.sum(), permutation_type="independent",
                                             n_resamples=n_permutations, alternative=alternative, random_state=seed)
            return float(result.pvalue)
    """),
    "p-value: the package's weat": ("weat_p_value", """
        from llmcourse.ethics import weat as _weat

        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            return _weat(X, Y, A, B, alternative=alternative, n_permutations=n_permutations, seed=seed).p_value
    """),
    "p-value: the package's weat through the module": ("weat_p_value", """
        import llmcourse.ethics

        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            return llmcourse.ethics.weat(X, Y, A, B, alternative, n_permutations, seed).p_value
    """),
})

# ----------------------------------------------------------------------------- 4. exposure

EXPOSURE = """
    def exposure(canary_score, candidate_scores):
        scores = np.asarray(candidate_scores, dtype=np.float64)
        rank = {rank}
        return float({log}({size}) - {log}(rank))
"""
EXPOSURE_RIGHT = dict(rank="1 + np.count_nonzero(scores > canary_score)", log="np.log2", size="len(scores)")
EXPOSURE_BUGS = {
    "exposure: the natural logarithm": dict(log="np.log"),
    "exposure: log10": dict(log="np.log10"),
    "exposure: rank from 0": dict(rank="np.count_nonzero(scores > canary_score)"),
    "exposure: ties counted as higher": dict(rank="np.count_nonzero(scores >= canary_score)"),
    "exposure: the canary counted above itself": dict(rank="1 + np.count_nonzero(scores >= canary_score)"),
    "exposure: the least likely first": dict(rank="1 + np.count_nonzero(scores < canary_score)"),
    "exposure: |R| without the canary": dict(size="len(scores) - 1"),
    "exposure: ties broken by position in a sort": dict(
        rank="1 + int(np.flatnonzero(np.argsort(scores)[::-1] == int(np.flatnonzero(scores == canary_score)[0]))[0])"),
}
WRONG.update(from_template("exposure", EXPOSURE, EXPOSURE_RIGHT, EXPOSURE_BUGS))
WRONG.update({
    "exposure: -log2 rank, without |R|": ("exposure", """
        def exposure(canary_score, candidate_scores):
            return -math.log2(1 + sum(1 for x in candidate_scores if x > canary_score))
    """),
    "exposure: log2 rank - log2 |R| (the sign flipped)": ("exposure", """
        def exposure(canary_score, candidate_scores):
            rank = 1 + sum(1 for x in candidate_scores if x > canary_score)
            return math.log2(rank) - math.log2(len(candidate_scores))
    """),
    "exposure: the package's function": ("exposure", """
        from llmcourse.ethics import exposure
    """),
    "exposure: the package's rank": ("exposure", """
        from llmcourse.ethics.privacy import canary_rank as _rank

        def exposure(canary_score, candidate_scores):
            return math.log2(len(candidate_scores)) - math.log2(_rank(canary_score, candidate_scores))
    """),
})

# ----------------------------------------------------------------------------- 5. expected calibration error

ECE = """
    def expected_calibration_error(confidences, correct, n_bins=10):
        c = np.asarray(confidences, dtype=np.float64)
        y = np.asarray(correct, dtype=np.float64)
        edges = {edges}
        which = {which}
        count = np.bincount(which, minlength=n_bins)[{keep}]
        conf = np.bincount(which, weights=c, minlength=n_bins)[{keep}]
        right = np.bincount(which, weights=y, minlength=n_bins)[{keep}]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc, conf = right / count, conf / count  # NaN in the empty bins
        gaps = {gap}
        return float({combine})
"""
ECE_RIGHT = dict(edges="np.linspace(0.0, 1.0, n_bins + 1)", which="np.searchsorted(edges[1:-1], c, side='right')",
                 keep=":n_bins", gap="np.abs(acc - conf)", combine="np.nansum(count / len(c) * gaps)")
ECE_BUGS = {
    "ECE: the mean of the bins' gaps, not weighted by their counts": dict(combine="np.nanmean(gaps)"),
    "ECE: the mean over all bins, empty ones 0": dict(combine="np.nansum(gaps) / n_bins"),
    "ECE: empty bins give NaN": dict(combine="np.sum(count / len(c) * gaps)"),
    "ECE: a confidence of 1 in no bin": dict(which="np.floor(c * n_bins).astype(int)"),
    "ECE: a confidence of 1 in a bin of its own": dict(which="np.floor(c * n_bins).astype(int)", keep=":"),
    "ECE: bins closed on the right": dict(which="np.searchsorted(edges[1:-1], c, side='left')"),
    "ECE: n_bins - 1 bins (np.linspace(0, 1, n_bins))": dict(edges="np.linspace(0.0, 1.0, n_bins)"),
    "ECE: equal-mass bins (quantiles of the confidences)": dict(
        edges="np.quantile(c, np.linspace(0.0, 1.0, n_bins + 1))"),
    "ECE: squared gaps": dict(gap="(acc - conf) ** 2"),
    "ECE: signed gaps": dict(gap="acc - conf"),
    "ECE: the largest gap (MCE)": dict(combine="np.nanmax(gaps)"),
    "ECE: one bin for everything": dict(which="np.zeros(len(c), dtype=int)"),
}
WRONG.update(from_template("expected_calibration_error", ECE, ECE_RIGHT, ECE_BUGS))
WRONG.update({
    "ECE: the mean of |correct - confidence| over the predictions": ("expected_calibration_error", """
        def expected_calibration_error(confidences, correct, n_bins=10):
            return float(np.mean(np.abs(np.asarray(correct, dtype=float) - np.asarray(confidences, dtype=float))))
    """),
    "ECE: the gaps weighted by n_b / N, bins by the rounded confidence": ("expected_calibration_error", """
        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
            which = np.round(c * (n_bins - 1)).astype(int)  # the nearest of n_bins centres
            total = 0.0
            for b in range(n_bins):
                m = which == b
                if m.any():
                    total += m.sum() / len(c) * abs(y[m].mean() - c[m].mean())
            return total
    """),
    "ECE: scikit-learn's calibration_curve": ("expected_calibration_error", """
        from sklearn.calibration import calibration_curve

        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=int)
            accuracy, confidence = calibration_curve(y, c, n_bins=n_bins)
            counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], c, side="right"), minlength=n_bins)
            return float(np.sum(counts[counts > 0] / len(c) * np.abs(accuracy - confidence)))
    """),
    "ECE: the package's function": ("expected_calibration_error", """
        from llmcourse.ethics import expected_calibration_error
    """),
    "ECE: the package's reliability bins": ("expected_calibration_error", """
        from llmcourse.ethics.calibration import reliability_bins as _bins

        def expected_calibration_error(confidences, correct, n_bins=10):
            b = _bins(confidences, correct, n_bins)
            return float(np.sum(b.count / b.count.sum() * np.abs(b.accuracy - b.confidence)))
    """),
})

# ----------------------------------------------------------------------------- right, in other styles

ALTERNATIVES = {
    "association: loops over the words with math": ("association", """
        def association(W, A, B):
            def cos(u, v):
                return sum(a * b for a, b in zip(u, v)) / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))

            A, B = np.asarray(A, dtype=float).tolist(), np.asarray(B, dtype=float).tolist()
            return np.array([sum(cos(w, a) for a in A) / len(A) - sum(cos(w, b) for b in B) / len(B)
                             for w in np.asarray(W, dtype=float).tolist()])
    """),
    "association: scipy's cdist": ("association", """
        from scipy.spatial.distance import cdist

        def association(W, A, B):
            return (1 - cdist(W, A, "cosine")).mean(axis=1) - (1 - cdist(W, B, "cosine")).mean(axis=1)
    """),
    "association: the means of the unit attribute vectors first": ("association", """
        def association(W, A, B):
            unit = lambda M: np.asarray(M, dtype=np.float64) / np.linalg.norm(M, axis=1, keepdims=True)
            return unit(W) @ (unit(A).mean(axis=0) - unit(B).mean(axis=0))  # the mean of cosines, by linearity
    """),
    "association: torch, cosine_similarity": ("association", """
        import torch

        def association(W, A, B):
            w, a, b = (torch.as_tensor(np.asarray(M, dtype=np.float64)) for M in (W, A, B))
            cos = torch.nn.functional.cosine_similarity
            return (cos(w[:, None], a[None], dim=-1).mean(1) - cos(w[:, None], b[None], dim=-1).mean(1)).numpy()
    """),
    "effect size: statistics.stdev in plain Python": ("weat_effect_size", """
        import statistics

        def weat_effect_size(X, Y, A, B):
            sx, sy = association(X, A, B).tolist(), association(Y, A, B).tolist()
            return (statistics.fmean(sx) - statistics.fmean(sy)) / statistics.stdev(sx + sy)
    """),
    "effect size: scipy.stats.tstd": ("weat_effect_size", """
        from scipy import stats

        def weat_effect_size(X, Y, A, B):
            s = association(np.concatenate([X, Y]), A, B)
            return (s[: len(X)].mean() - s[len(X):].mean()) / stats.tstd(s)
    """),
    "effect size: the cosines inline, the variance by its formula": ("weat_effect_size", """
        def weat_effect_size(X, Y, A, B):
            unit = lambda M: M / np.linalg.norm(M, axis=1, keepdims=True)
            s = lambda M: (unit(M) @ unit(A).T).mean(1) - (unit(M) @ unit(B).T).mean(1)
            sx, sy = s(X), s(Y)
            both = np.concatenate([sx, sy])
            n = len(both)
            variance = ((both - both.mean()) ** 2).sum() / (n - 1)
            return (sx.mean() - sy.mean()) / variance**0.5
    """),
    "p-value: plain Python loops, rng.choice": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            s = list(association(X, A, B)) + list(association(Y, A, B))
            n, n_x = len(s), len(X)
            observed = sum(s[:n_x]) - sum(s[n_x:])

            def extreme(part):
                inside = set(part)
                stat = sum(s[i] for i in inside) - sum(s[i] for i in range(n) if i not in inside)
                if alternative == "greater":
                    return stat >= observed - 1e-9
                return abs(stat) >= abs(observed) - 1e-9

            if math.comb(n, n_x) <= n_permutations:
                count = total = 0
                for part in itertools.combinations(range(n), n_x):
                    count += extreme(part)
                    total += 1
                return count / total
            rng = np.random.default_rng(seed)
            count = sum(extreme(rng.choice(n, n_x, replace=False).tolist()) for _ in range(n_permutations))
            return (count + 1) / (n_permutations + 1)
    """),
    "p-value: Y' enumerated instead of X' (another order), rng.permutation": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            s = association(np.vstack([X, Y]), A, B)
            n, n_y = len(s), len(Y)
            observed = s[: len(X)].sum() - s[len(X):].sum()
            if math.comb(n, n_y) <= n_permutations:
                parts = np.array(list(itertools.combinations(range(n)[::-1], n_y)))  # Y' this time, backwards
                exact = True
            else:
                rng = np.random.default_rng(seed)
                parts = np.array([rng.permutation(n)[:n_y] for _ in range(n_permutations)])
                exact = False
            stats = s.sum() - 2 * s[parts].sum(axis=1)  # sum over X' minus sum over Y'
            if alternative == "greater":
                count = (stats >= observed - 1e-9).sum()
            else:
                count = (np.abs(stats) >= abs(observed) - 1e-9).sum()
            return count / len(parts) if exact else (count + 1) / (len(parts) + 1)
    """),
    "p-value: bitmasks with popcount, rng.permuted": ("weat_p_value", """
        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            s = association(np.concatenate([X, Y]), A, B)
            n, n_x = len(s), len(X)
            S = lambda inside: np.where(inside, s, -s).sum(axis=-1)  # sum over X' minus sum over Y'
            observed = S(np.arange(n) < n_x)
            exact = math.comb(n, n_x) <= n_permutations
            if exact:
                codes = np.array([m for m in range(2**n) if bin(m).count("1") == n_x])
                inside = (codes[:, None] >> np.arange(n)) & 1 == 1  # (C, n)
            else:
                rng = np.random.default_rng(seed)
                inside = rng.permuted(np.tile(np.arange(n) < n_x, (n_permutations, 1)), axis=1)  # (N, n)
            stats = S(inside)
            hit = stats >= observed - 1e-9 if alternative == "greater" else np.abs(stats) >= abs(observed) - 1e-9
            return hit.mean() if exact else (hit.sum() + 1) / (n_permutations + 1)
    """),
    "p-value: scipy.special.comb, one statistic per split, argpartition": ("weat_p_value", """
        from scipy.special import comb

        def weat_p_value(X, Y, A, B, alternative="two-sided", n_permutations=10_000, seed=0):
            sx, sy = association(X, A, B), association(Y, A, B)
            s = np.concatenate([sx, sy])
            n, n_x = len(s), len(sx)
            observed = sx.sum() - sy.sum()
            n_splits = comb(n, n_x, exact=True)
            if n_splits <= n_permutations:
                chosen = itertools.combinations(range(n), n_x)
                stats = np.array([s[list(c)].sum() - np.delete(s, list(c)).sum() for c in chosen])
            else:
                rng = np.random.default_rng(seed)
                keys = rng.random((n_permutations, n))
                chosen = np.argpartition(keys, n_x - 1, axis=1)[:, :n_x]  # the n_x smallest keys: a random subset
                stats = 2 * s[chosen].sum(axis=1) - s.sum()
            if alternative == "two-sided":
                stats, observed = np.abs(stats), abs(observed)
            count = int(np.sum(stats >= observed - 1e-9))
            return count / n_splits if n_splits <= n_permutations else (count + 1) / (n_permutations + 1)
    """),
    "exposure: a sorted list and index": ("exposure", """
        def exposure(canary_score, candidate_scores):
            ranked = sorted(candidate_scores, reverse=True)
            rank = ranked.index(canary_score) + 1  # the first of the tied scores: ties share the best rank
            return math.log2(len(ranked) / rank)
    """),
    "exposure: -log2(rank / |R|), a loop": ("exposure", """
        def exposure(canary_score, candidate_scores):
            higher = 0
            for x in candidate_scores:
                if x > canary_score:
                    higher += 1
            return -math.log2((higher + 1) / len(candidate_scores))
    """),
    "ECE: np.histogram with weights": ("expected_calibration_error", """
        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
            count, _ = np.histogram(c, bins=n_bins, range=(0, 1))
            conf, _ = np.histogram(c, bins=n_bins, range=(0, 1), weights=c)
            right, _ = np.histogram(c, bins=n_bins, range=(0, 1), weights=y)
            used = count > 0
            return float(np.sum(np.abs(right[used] - conf[used])) / len(c))  # n_b / N * |acc - conf| = |sum y - sum c| / N
    """),
    "ECE: np.digitize, a loop over the bins": ("expected_calibration_error", """
        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct).astype(float)
            which = np.digitize(c, np.linspace(0, 1, n_bins + 1)[1:-1])
            ece = 0.0
            for b in range(n_bins):
                inside = which == b
                if inside.sum() > 0:
                    ece += inside.mean() * abs(y[inside].mean() - c[inside].mean())
            return ece
    """),
    "ECE: masks on the edges, the last bin closed": ("expected_calibration_error", """
        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
            edges = np.linspace(0, 1, n_bins + 1)
            total = 0.0
            for b, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
                inside = (c >= low) & ((c < high) | (b == n_bins - 1))
                if inside.any():
                    total += inside.sum() / len(c) * abs(y[inside].mean() - c[inside].mean())
            return total
    """),
    "ECE: floor(c * M), clipped to the last bin": ("expected_calibration_error", """
        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
            which = np.minimum((c * n_bins).astype(int), n_bins - 1)
            count = np.bincount(which, minlength=n_bins)
            gap = np.abs(np.bincount(which, weights=y, minlength=n_bins) - np.bincount(which, weights=c, minlength=n_bins))
            return float(gap.sum() / len(c))
    """),
    "ECE: nansum over the bins' NaN means": ("expected_calibration_error", """
        import warnings

        def expected_calibration_error(confidences, correct, n_bins=10):
            c, y = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
            which = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], c, side="right")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gaps = np.array([abs(np.mean(y[which == b]) - np.mean(c[which == b])) for b in range(n_bins)])  # NaN if empty
            weights = np.array([np.mean(which == b) for b in range(n_bins)])
            return float(np.nansum(weights * gaps))
    """),
}

# association mistakes that weat_effect_size and weat_p_value would otherwise pay for twice
HELPER_BUGS = [
    "association: dot products, not cosines",
    "association: mean over the wrong axis",
    "association: normalises the caller's arrays in place",
    "association: computed in float32",
    "association: the package's function",
    "association: the package's function through a wrapper",
]

EXERCISE = Exercise(
    folder="10_ethics", notebook="ethics", answers=ANSWERS, points=(15, 15),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS,
)


# ----------------------------------------------------------------------------- this exercise's own tests


def test_the_references_follow_the_worked_examples():
    """The package's functions, which the hidden tests compare with, give the numbers the notebook's text works out."""
    from llmcourse.ethics import association, effect_size, expected_calibration_error, exposure, weat

    A, B = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    s = association(np.array([[2.0, 0.0], [3.0, 4.0], [-1.0, 1.0]]), A, B)
    assert np.allclose(s, [1.0, -0.2, -math.sqrt(2)])
    assert np.isclose(association(np.array([2.0, 0.0]), np.array([[1.0, 0.0], [1.0, 1.0]]), B), (1 + 1 / math.sqrt(2)) / 2)

    def toy(values):  # the notebook's toy_words
        t = np.arccos(np.asarray(values) / math.sqrt(2)) - math.pi / 4
        return np.stack([np.cos(t), np.sin(t)], axis=1)

    assert np.allclose(association(toy([0.5, -0.2, 1.4]), A, B), [0.5, -0.2, 1.4])
    assert np.isclose(effect_size(toy([1.0, 1.4]), toy([-1.0, 0.0]), A, B), 1.7 / math.sqrt(3.47 / 3))
    assert round(1.7 / math.sqrt(3.47 / 3), 3) == 1.581 and round(1.7 / math.sqrt(3.47 / 4), 3) == 1.825
    X, Y = toy([0.5, 0.3]), toy([-0.2, 0.1])
    assert np.isclose(weat(X, Y, A, B, alternative="greater").p_value, 1 / 6)
    assert np.isclose(weat(X, Y, A, B, alternative="two-sided").p_value, 1 / 3)
    X, Y = toy([0.5]), toy([0.3, -0.2, 0.1])
    assert np.isclose(weat(X, Y, A, B, alternative="greater").p_value, 1 / 4)
    assert np.isclose(weat(X, Y, A, B, alternative="two-sided").p_value, 3 / 4)

    scores = [-3.2, -1.0, -2.5, -1.0, -4.0]
    assert round(exposure(-2.5, scores), 3) == 0.737
    assert round(exposure(-1.0, scores), 3) == 2.322
    assert exposure(-4.0, scores) == 0.0

    conf, correct = np.array([1.0, 0.9, 0.8, 0.6, 0.5, 0.3]), np.array([1, 1, 0, 1, 0, 0])
    assert np.isclose(expected_calibration_error(conf, correct, 4), 0.55 / 3)
    assert round(0.55 / 3, 3) == 0.183 and round((0.3 + 0.05 + 0.7 / 3) / 3, 3) == 0.194


@pytest.mark.parametrize("n_bins, edges", [(2, [0.5]), (4, [0.25, 0.5, 0.75]), (8, [0.125, 0.375, 0.5, 0.625]),
                                           (10, [0.5]), (7, [])])
def test_every_binning_the_notebook_allows_agrees_on_the_edges_the_tests_use(n_bins, edges):
    """searchsorted on np.linspace's edges (the reference), np.digitize, np.histogram and floor(c * M) put 0, 1 and the
    inner edges that the hidden tests use into the same bins; at 0.3 with ten bins they do not, as the notebook warns."""
    from llmcourse.ethics import reliability_bins

    c = np.array([0.0, 1.0, *edges])
    inner = np.linspace(0, 1, n_bins + 1)[1:-1]
    reference = np.searchsorted(inner, c, side="right")
    assert np.array_equal(np.digitize(c, inner), reference)
    assert np.array_equal(np.minimum((c * n_bins).astype(int), n_bins - 1), reference)
    for value, b in zip(c, reference):
        counts, _ = np.histogram([value], bins=n_bins, range=(0, 1))
        assert counts[b] == 1
        assert reliability_bins([value], [1], n_bins).bin.tolist() == [b]
    assert np.searchsorted(np.linspace(0, 1, 11)[1:-1], 0.3, side="right") == 2 and int(0.3 * 10) == 3
