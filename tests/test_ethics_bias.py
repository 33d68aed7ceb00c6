"""WEAT, SEAT and counterfactual tests of a classifier, and the published word lists.

Independent references: plain-Python loops written here (cosines, the effect size with
the sample standard deviation, the permutation test over every split), a brute-force
count of the splits, and a normal-approximation interval for the paired bootstrap.
Small random vectors and hand-built cases only: no model, no network.
"""

import itertools
import math
import statistics

import numpy as np
import pytest

from llmcourse.ethics import wordlists
from llmcourse.ethics.bias import (
    SEAT_NAME_TEMPLATES,
    SEAT_TEMPLATES,
    association,
    counterfactual_gap,
    counterfactual_pairs,
    effect_size,
    seat_sentences,
    seat_vectors,
    weat,
)


# ---------------------------------------------------------------- references written here


def cosine(u, v):
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def s_loop(w, A, B):
    return statistics.fmean(cosine(w, a) for a in A) - statistics.fmean(cosine(w, b) for b in B)


def effect_size_loop(X, Y, A, B, sample=True):
    sx = [s_loop(x, A, B) for x in X]
    sy = [s_loop(y, A, B) for y in Y]
    spread = statistics.stdev(sx + sy) if sample else statistics.pstdev(sx + sy)
    return (statistics.fmean(sx) - statistics.fmean(sy)) / spread


def p_value_loop(X, Y, A, B, alternative):
    """Every split of X ∪ Y into sets of sizes |X| and |Y|, one at a time."""
    words = list(X) + list(Y)
    s = [s_loop(w, A, B) for w in words]
    observed = sum(s[: len(X)]) - sum(s[len(X):])
    hits = total = 0
    for part in itertools.combinations(range(len(words)), len(X)):
        rest = [i for i in range(len(words)) if i not in part]
        stat = sum(s[i] for i in part) - sum(s[i] for i in rest)
        if alternative == "greater":
            hits += stat >= observed - 1e-12
        elif alternative == "less":
            hits += stat <= observed + 1e-12
        else:
            hits += abs(stat) >= abs(observed) - 1e-12
        total += 1
    return hits / total, total


def biased_sets(seed, n_x=8, n_y=8, n_a=6, n_b=6, d=6, shift=0.6):
    """X leans towards A's direction and Y towards B's, by ``shift``, plus noise."""
    rng = np.random.default_rng(seed)
    e_a, e_b = np.eye(d)[0], np.eye(d)[1]
    X = rng.normal(size=(n_x, d)) + shift * e_a
    Y = rng.normal(size=(n_y, d)) + shift * e_b
    A = rng.normal(size=(n_a, d)) + 2 * e_a
    B = rng.normal(size=(n_b, d)) + 2 * e_b
    return X, Y, A, B


# ---------------------------------------------------------------- association and effect size


def test_association_of_one_vector_and_of_a_stack():
    A = np.array([[1.0, 0.0], [2.0, 0.0]])
    B = np.array([[0.0, 3.0]])
    assert association([1.0, 0.0], A, B) == pytest.approx(1.0)  # cos 1 with A, cos 0 with B
    assert association([0.0, 5.0], A, B) == pytest.approx(-1.0)
    w = np.array([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(association(w, A, B), [0.0, 1.0, -1.0], atol=1e-12)
    rng = np.random.default_rng(0)
    W, A, B = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=(4, 4))
    np.testing.assert_allclose(association(W, A, B), [s_loop(w, A, B) for w in W], rtol=1e-12)


def test_effect_size_sign_follows_which_target_is_nearer_which_attribute():
    X, Y, A, B = biased_sets(1)
    assert effect_size(X, Y, A, B) > 0.5
    assert effect_size(Y, X, A, B) == pytest.approx(-effect_size(X, Y, A, B))  # swap targets
    assert effect_size(X, Y, B, A) == pytest.approx(-effect_size(X, Y, A, B))  # swap attributes


def test_effect_size_matches_a_plain_python_loop():
    for seed in range(3):
        X, Y, A, B = biased_sets(seed, n_x=5, n_y=7, n_a=4, n_b=3, shift=0.3)
        assert effect_size(X, Y, A, B) == pytest.approx(effect_size_loop(X, Y, A, B), rel=1e-10)


def test_effect_size_uses_the_sample_standard_deviation():
    X, Y, A, B = biased_sets(2, n_x=4, n_y=4)
    d = effect_size(X, Y, A, B)
    sample, population = effect_size_loop(X, Y, A, B, sample=True), effect_size_loop(X, Y, A, B, sample=False)
    assert d == pytest.approx(sample, rel=1e-10)
    assert abs(d - population) > 0.02  # the population-std variant gives a different number
    n = 8  # the two differ by exactly sqrt((n - 1) / n)
    assert d == pytest.approx(population * math.sqrt((n - 1) / n), rel=1e-10)


def test_effect_size_by_hand_on_a_tiny_case():
    # s(x) for each target: 1, 0 for X and 0, -1 for Y; sample std of (1, 0, 0, -1) = sqrt(2/3)
    A, B = [[1.0, 0.0]], [[0.0, 1.0]]
    X = [[1.0, 0.0], [1.0, 1.0]]
    Y = [[2.0, 2.0], [0.0, 1.0]]
    s = [1.0, 0.0, 0.0, -1.0]
    np.testing.assert_allclose(association(np.array(X + Y), A, B), s, atol=1e-12)
    assert effect_size(X, Y, A, B) == pytest.approx(1.0 / math.sqrt(2 / 3))


def test_effect_size_is_invariant_to_the_length_of_every_vector():
    X, Y, A, B = biased_sets(3)
    rng = np.random.default_rng(9)
    scaled = [m * rng.uniform(0.1, 10.0, size=(len(m), 1)) for m in (X, Y, A, B)]
    assert effect_size(*scaled) == pytest.approx(effect_size(X, Y, A, B), rel=1e-10)
    assert weat(*scaled, n_permutations=500).p_value == weat(X, Y, A, B, n_permutations=500).p_value


# ---------------------------------------------------------------- the permutation test


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_exact_p_value_equals_a_brute_force_loop(alternative):
    X, Y, A, B = biased_sets(4, n_x=3, n_y=5, n_a=3, n_b=4, shift=0.4)
    result = weat(X, Y, A, B, alternative=alternative, n_permutations=10_000)
    expected, splits = p_value_loop(X, Y, A, B, alternative)
    assert result.exact
    assert result.n_permutations == splits == math.comb(8, 3)  # only splits of sizes 3 and 5
    assert result.p_value == pytest.approx(expected, abs=1e-12)
    sx = [s_loop(x, A, B) for x in X]
    sy = [s_loop(y, A, B) for y in Y]
    assert result.statistic == pytest.approx(sum(sx) - sum(sy), rel=1e-10)
    assert result.effect_size == pytest.approx(effect_size_loop(X, Y, A, B), rel=1e-10)


def test_sampled_p_value_is_close_to_the_exact_one():
    X, Y, A, B = biased_sets(5, shift=0.35)  # 8 + 8 targets: C(16, 8) = 12870 splits
    exact = weat(X, Y, A, B, alternative="greater", n_permutations=20_000)
    sampled = weat(X, Y, A, B, alternative="greater", n_permutations=5_000, seed=3)
    assert exact.exact and exact.n_permutations == 12_870
    assert not sampled.exact and sampled.n_permutations == 5_000
    assert 0.005 < exact.p_value < 0.5  # a case where the two can meaningfully agree
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.03)
    assert weat(X, Y, A, B, "greater", 5_000, seed=3) == sampled  # seeded: the same draw again


def test_sampled_splits_keep_the_set_sizes():
    # |X| = 3, |Y| = 12, and every target leans towards A: S = sum over 3 - sum over 12 is then
    # far below 0 for any split of these sizes, but not for splits of other sizes
    X, Y, A, B = biased_sets(7, n_x=3, n_y=12, shift=0.5)
    X, Y = X + np.eye(6)[0], Y + np.eye(6)[0]
    expected, splits = p_value_loop(X, Y, A, B, "greater")
    assert splits == 455 and 0.01 < expected < 0.1
    sampled = weat(X, Y, A, B, alternative="greater", n_permutations=400, seed=0)
    assert not sampled.exact
    assert sampled.p_value == pytest.approx(expected, abs=0.03)

    # the wrong variant: each target lands in X with probability 1/2
    rng = np.random.default_rng(0)
    s = np.array([s_loop(w, A, B) for w in np.vstack([X, Y])])
    observed = s[:3].sum() - s[3:].sum()
    labels = rng.random((4000, 15)) < 0.5
    wrong = np.mean((labels * s).sum(1) - (~labels * s).sum(1) >= observed)
    assert wrong > expected + 0.3


def test_sampled_p_value_is_never_zero():
    X, Y, A, B = biased_sets(7, shift=3.0)  # a huge effect: no random split comes close
    result = weat(X, Y, A, B, alternative="greater", n_permutations=999)
    assert result.p_value == pytest.approx(1 / 1000)
    assert weat(X, Y, A, B, alternative="greater", n_permutations=20_000).p_value == pytest.approx(1 / 12_870)


def test_two_sided_is_twice_one_sided_for_equal_sizes():
    X, Y, A, B = biased_sets(10, shift=0.3)
    two = weat(X, Y, A, B, alternative="two-sided", n_permutations=20_000)
    greater = weat(X, Y, A, B, alternative="greater", n_permutations=20_000)
    less = weat(X, Y, A, B, alternative="less", n_permutations=20_000)
    assert two.statistic > 0
    # with |X| = |Y| swapping the sets negates S, so the null distribution is symmetric
    assert two.p_value == pytest.approx(2 * greater.p_value, rel=1e-12)
    assert two.p_value != pytest.approx(greater.p_value)  # pins the default convention
    assert greater.p_value + less.p_value == pytest.approx(1 + 1 / 12_870)  # the observed split counts in both
    assert less.p_value > 0.5


def test_the_default_alternative_is_two_sided():
    X, Y, A, B = biased_sets(8, shift=0.3)
    assert weat(X, Y, A, B, n_permutations=20_000) == weat(X, Y, A, B, "two-sided", 20_000)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda X, Y, A, B: (X[:0], Y, A, B), "X is empty"),
        (lambda X, Y, A, B: (X, Y[:0], A, B), "Y is empty"),
        (lambda X, Y, A, B: (X, Y, A[:0], B), "A is empty"),
        (lambda X, Y, A, B: (X, Y, A, B[:, :3]), "B has vectors of dimension 3"),
        (lambda X, Y, A, B: (X, Y[:, :2], A, B), "Y has vectors of dimension 2"),
        (lambda X, Y, A, B: (X, Y, np.where(A > 1, np.nan, A), B), "A contains NaN"),
        (lambda X, Y, A, B: (X, np.vstack([Y, np.zeros(6)]), A, B), r"Y\[8\] is the zero vector"),
        (lambda X, Y, A, B: (X[0], Y, A, B), "X must be a 2-D array"),
    ],
)
def test_bad_sets_are_refused_by_name(change, match):
    X, Y, A, B = biased_sets(0)
    with pytest.raises(ValueError, match=match):
        weat(*change(X, Y, A, B))
    with pytest.raises(ValueError, match=match):
        effect_size(*change(X, Y, A, B))


def test_bad_settings_are_refused_by_name():
    X, Y, A, B = biased_sets(0)
    with pytest.raises(ValueError, match="alternative"):
        weat(X, Y, A, B, alternative="two_sided")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_permutations"):
            weat(X, Y, A, B, n_permutations=bad)
    with pytest.raises(ValueError, match="same association"):
        effect_size(X[:1].repeat(2, 0), X[:1].repeat(2, 0), A, B)


# ---------------------------------------------------------------- SEAT


def test_seat_sentences_put_every_word_in_every_template():
    sentences, index = seat_sentences(["math", "poetry"])
    n = len(SEAT_TEMPLATES)
    assert len(sentences) == 2 * n
    assert index.tolist() == [0] * n + [1] * n
    assert sentences[0] == "This is math."
    assert "Math is here." in sentences[:n]  # a word that starts a sentence is capitalised
    assert all("oetry" in s and "math" not in s.lower() for s in sentences[n:])
    names, _ = seat_sentences(["Amy"], SEAT_NAME_TEMPLATES)
    assert "Amy is here." in names and "This is Amy." in names


def test_seat_templates_need_exactly_one_slot():
    with pytest.raises(ValueError, match=r"templates\[1\]"):
        seat_sentences(["math"], ["This is {}.", "No slot here."])
    with pytest.raises(ValueError, match="words is empty"):
        seat_sentences([])
    with pytest.raises(TypeError, match="not one string"):
        seat_sentences("math")


def toy_embed(sentences):
    """A deterministic bag-of-words encoder: the sum of one fixed random vector per word."""
    vectors = []
    for sentence in sentences:
        v = np.zeros(16)
        for word in sentence.lower().strip(".").split():
            v += np.random.default_rng(sum(map(ord, word)) + 1000 * len(word)).normal(size=16)
        vectors.append(v)
    return np.array(vectors)


def test_seat_vectors_average_each_words_sentences():
    words = ["math", "poetry", "art"]
    templates = ("This is {}.", "{} is here.", "We talked about {}.")
    vectors = seat_vectors(toy_embed, words, templates)
    assert vectors.shape == (3, 16)
    for i, word in enumerate(words):
        own = toy_embed([t.replace("{}", word) for t in templates]).mean(axis=0)
        np.testing.assert_allclose(vectors[i], own, rtol=1e-12)
    with pytest.raises(ValueError, match="one vector per sentence"):
        seat_vectors(lambda s: np.zeros((len(s) - 1, 4)), words, templates)


def test_seat_vectors_feed_weat():
    X, Y, A, B = wordlists.WEAT_TESTS["WEAT 7: math vs arts, male vs female terms"]
    result = weat(*(seat_vectors(toy_embed, words) for words in (X, Y, A, B)), n_permutations=2_000)
    assert -2 < result.effect_size < 2 and 0 < result.p_value <= 1


# ---------------------------------------------------------------- counterfactual tests


def test_counterfactual_pairs_differ_only_in_the_term():
    templates = ["{person} feels angry.", "I think {person} is right."]
    a, b = counterfactual_pairs(templates, ["he", "my brother"], ["she", "my sister"])
    assert a == ["He feels angry.", "My brother feels angry.", "I think he is right.", "I think my brother is right."]
    assert b == ["She feels angry.", "My sister feels angry.", "I think she is right.", "I think my sister is right."]
    for sa, sb in zip(a, b):
        assert sa.split()[-2:] == sb.split()[-2:]  # the same template around the term


def test_counterfactual_pairs_refuse_bad_input():
    with pytest.raises(ValueError, match="group_b has 1"):
        counterfactual_pairs(["{person} is here."], ["he", "him"], ["she"])
    with pytest.raises(ValueError, match=r"templates\[0\] has no '\{person\}'"):
        counterfactual_pairs(["{} is here."], ["he"], ["she"])
    with pytest.raises(ValueError, match="group_a is empty"):
        counterfactual_pairs(["{person} is here."], [], [])


def test_counterfactual_gap_by_hand():
    gap = counterfactual_gap([0.9, 0.6, 0.4, 0.2], [0.8, 0.4, 0.4, 0.3])
    assert gap.mean_gap == pytest.approx((0.1 + 0.2 + 0.0 - 0.1) / 4)
    assert gap.flip_rate == pytest.approx(1 / 4)  # only 0.6 vs 0.4 crosses 0.5
    assert gap.n_pairs == 4
    assert gap.low <= gap.mean_gap <= gap.high
    assert counterfactual_gap([0.9, 0.6], [0.8, 0.4], threshold=0.85).flip_rate == pytest.approx(0.5)


def test_counterfactual_gap_of_a_fair_classifier_is_zero():
    scores = np.linspace(0.1, 0.9, 20)
    gap = counterfactual_gap(scores, scores)
    assert (gap.mean_gap, gap.low, gap.high, gap.flip_rate) == (0.0, 0.0, 0.0, 0.0)


def test_counterfactual_gap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.8, size=400)
    diff = rng.normal(0.05, 0.1, size=400)
    gap = counterfactual_gap(a, a - diff, n_resamples=2_000)
    half = 1.96 * diff.std(ddof=1) / math.sqrt(400)
    assert gap.mean_gap == pytest.approx(diff.mean())
    assert gap.low == pytest.approx(diff.mean() - half, abs=0.25 * half)
    assert gap.high == pytest.approx(diff.mean() + half, abs=0.25 * half)
    assert counterfactual_gap(a, a - diff, n_resamples=2_000) == gap  # seeded


def test_counterfactual_gap_refuses_bad_input():
    with pytest.raises(ValueError, match="scores_b must pair up"):
        counterfactual_gap([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores_a contains NaN"):
        counterfactual_gap([0.1, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2"):
        counterfactual_gap([0.1], [0.2])
    with pytest.raises(ValueError, match="confidence"):
        counterfactual_gap([0.1, 0.2], [0.2, 0.1], confidence=95)


# ---------------------------------------------------------------- the word lists


def test_weat_lists_have_their_published_sizes():
    sizes = {"WEAT 1": 25, "WEAT 6": 8, "WEAT 7": 8, "WEAT 8": 8}
    assert sorted(name.split(":")[0] for name in wordlists.WEAT_TESTS) == sorted(sizes)
    for name, sets in wordlists.WEAT_TESTS.items():
        assert len(sets) == 4
        for words in sets:
            assert isinstance(words, tuple)
            assert len(words) == sizes[name.split(":")[0]], (name, words)
            assert len(set(words)) == len(words)  # no word twice
            assert all(isinstance(w, str) and w == w.strip() and w for w in words)
        X, Y, A, B = sets
        assert not set(X) & set(Y) and not set(A) & set(B)


def test_weat_lists_spot_checks():
    assert wordlists.FLOWERS[:3] == ("aster", "clover", "hyacinth") and wordlists.INSECTS[-1] == "weevil"
    assert "vacation" in wordlists.PLEASANT and "prison" in wordlists.UNPLEASANT
    X, Y, A, B = wordlists.WEAT_TESTS["WEAT 6: names, career vs family"]
    assert X[0] == "John" and Y[0] == "Amy" and A[0] == "executive" and B[0] == "home"
    assert "sculpture" in wordlists.ARTS_7 and "Shakespeare" in wordlists.ARTS_8
    assert "grandfather" in wordlists.MALE_TERMS_8 and "male" in wordlists.MALE_TERMS_7


def test_eec_lists_are_aligned_and_fill_the_templates():
    assert len(wordlists.EEC_MALE_TERMS) == len(wordlists.EEC_FEMALE_TERMS) == 10
    for names in (wordlists.EEC_AFRICAN_AMERICAN_FEMALE_NAMES, wordlists.EEC_AFRICAN_AMERICAN_MALE_NAMES,
                  wordlists.EEC_EUROPEAN_AMERICAN_FEMALE_NAMES, wordlists.EEC_EUROPEAN_AMERICAN_MALE_NAMES):
        assert len(names) == len(set(names)) == 10
    assert all(t.count("{person}") == 1 for t in wordlists.EEC_TEMPLATES)
    a, b = counterfactual_pairs(wordlists.EEC_TEMPLATES, wordlists.EEC_MALE_TERMS, wordlists.EEC_FEMALE_TERMS)
    assert len(a) == len(b) == 10 * len(wordlists.EEC_TEMPLATES)
    assert a[0] == "He feels angry." and b[0] == "She feels angry."
    assert len(set(a)) == len(a)
