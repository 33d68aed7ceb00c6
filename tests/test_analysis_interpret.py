"""Chapter 9's tools: sentence embeddings, PCA, k-means++ and topic words, each against an independent reference.

References: the transformers library's BertModel on the same MiniLM weights (embeddings),
scikit-learn's PCA and KMeans, BERTopic's ClassTfidfTransformer, and hand-computed
examples (NPMI, diversity, c-TF-IDF).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmcourse.analysis import (
    PCA,
    KMeans,
    class_counts,
    class_tfidf,
    kmeans_plus_plus,
    layer_embeddings,
    npmi_coherence,
    sentence_embeddings,
    top_words,
    topic_diversity,
)
from llmcourse.analysis import embeddings as embeddings_module
from llmcourse.analysis.kmeans import lloyd
from llmcourse.models import from_minilm
from llmcourse.models.bert import minilm_path
from llmcourse.tokenizers import WordPieceTokenizer

SEEDS = range(5)
SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The plot is nothing but boilerplate clichés from start to finish.",
    "It's a charming and often affecting journey.",
    "Unfunny and lame.",
    "An utterly compelling 'who wrote it' in which the reputation of the most famous author who ever lived "
    "comes into question.",
    "Effective but too-tepid biopic.",
]


def _correlated(n, d, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + offset


# ----------------------------------------------------------------------------- embeddings


@pytest.fixture(scope="module")
def minilm():
    return from_minilm(), WordPieceTokenizer.from_minilm()


def test_sentence_embeddings_match_transformers_mean_pooling(minilm, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    model, tokenizer = minilm
    ours = sentence_embeddings(SENTENCES, model, tokenizer, batch_size=4)  # (N, 384)
    ref_model = transformers.BertModel.from_pretrained(minilm_path()).eval()
    ref_tok = transformers.BertTokenizerFast.from_pretrained(minilm_path())
    batch = ref_tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref_model(**batch).last_hidden_state  # (N, T, 384)
    mask = batch["attention_mask"][..., None].float()
    ref = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    unit = sentence_embeddings(SENTENCES, model, tokenizer, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=2e-5)


def test_layer_embeddings_every_layer_and_batch_invariant(minilm, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    model, tokenizer = minilm
    layers = layer_embeddings(SENTENCES, model, tokenizer, batch_size=3)
    assert layers.shape == (7, len(SENTENCES), 384)  # the embedding layer and 6 blocks
    assert not np.allclose(layers[0], layers[-1])
    np.testing.assert_array_equal(layers[-1], sentence_embeddings(SENTENCES, model, tokenizer, batch_size=3))
    # one sentence alone (no padding at all) gives the vector it got in a padded batch
    for i in (0, 3, 4):
        alone = layer_embeddings([SENTENCES[i]], model, tokenizer, cache=False)
        np.testing.assert_allclose(alone[:, 0], layers[:, i], atol=2e-5)


def test_embeddings_are_cached_by_weights_and_texts(minilm, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    model, tokenizer = minilm
    first = layer_embeddings(SENTENCES[:3], model, tokenizer)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached result should have been used")

    monkeypatch.setattr(embeddings_module, "_compute_layers", must_not_run)
    np.testing.assert_array_equal(layer_embeddings(SENTENCES[:3], model, tokenizer), first)
    with pytest.raises(AssertionError, match="cached"):  # other texts: a new key
        layer_embeddings(SENTENCES[:2], model, tokenizer)
    other = from_minilm()
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    with pytest.raises(AssertionError, match="cached"):  # other weights: a new key
        layer_embeddings(SENTENCES[:3], other, tokenizer)


@pytest.mark.parametrize("texts, error", [([], ValueError), ("one string", TypeError), (["ok", 3], TypeError)])
def test_embeddings_name_bad_texts(minilm, texts, error):
    with pytest.raises(error, match="texts"):
        layer_embeddings(texts, *minilm, cache=False)


# ----------------------------------------------------------------------------- PCA


@pytest.mark.parametrize("n, d, k", [(200, 10, 3), (50, 80, 5), (30, 4, 4)])
@pytest.mark.parametrize("seed", SEEDS)
def test_pca_matches_scikit_learn(n, d, k, seed):
    from sklearn.decomposition import PCA as SkPCA

    X = _correlated(n, d, seed, offset=5.0)
    ours, ref = PCA(k).fit(X), SkPCA(k, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-8)
    signs = np.sign((ours.components_ * ref.components_).sum(1))  # +1 or -1 per component
    np.testing.assert_allclose(ours.components_, ref.components_ * signs[:, None], atol=1e-8)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X) * signs, atol=1e-7)


def test_pca_centres_fixes_signs_and_reconstructs():
    X = _correlated(100, 6, 0, offset=[100.0, -50, 3, 0, 0, 7])
    pca = PCA(6).fit(X)
    Z = pca.transform(X)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-9)  # centred coordinates
    np.testing.assert_allclose(pca.inverse_transform(Z), X, atol=1e-8)  # all directions kept: lossless
    np.testing.assert_allclose(pca.explained_variance_ratio_.sum(), 1.0)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(6), atol=1e-10)
    biggest = pca.components_[np.arange(6), np.abs(pca.components_).argmax(1)]
    assert (biggest > 0).all()
    assert (np.diff(pca.explained_variance_) <= 0).all()
    # the ratio is over the total variance, not over the kept components
    two = PCA(2).fit(X)
    assert two.explained_variance_ratio_.sum() < 1
    np.testing.assert_allclose(two.explained_variance_ratio_, pca.explained_variance_ratio_[:2])


@pytest.mark.parametrize("k, X, match", [
    (0, np.ones((5, 3)), "n_components"), (4, np.ones((5, 3)), "n_components"), (2.0, np.ones((5, 3)), "n_components"),
    (1, np.ones(5), "2-D"), (1, np.ones((0, 3)), "empty"), (1, [[1.0, np.nan]], "NaN"),
])
def test_pca_names_bad_input(k, X, match):
    with pytest.raises(ValueError, match=match):
        PCA(k).fit(X)


# ----------------------------------------------------------------------------- k-means


def _blobs(seed, n=300, k=4, d=5, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    labels = rng.integers(k, size=n)
    return centres[labels] + rng.normal(scale=spread, size=(n, d)), labels


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k, spread, n_init", [(4, 1.0, 5), (8, 1.5, 5), (8, 3.0, 10)])
def test_kmeans_inertia_within_one_percent_of_scikit_learn(seed, k, spread, n_init):
    """Measured over seeds 0-19: within 0.12% (8 overlapping blobs need 10 restarts; with 5, one seed in 20 was 4% off)."""
    from sklearn.cluster import KMeans as SkKMeans

    X, _ = _blobs(seed, n=400, k=k, spread=spread)
    ours = KMeans(k, n_init=n_init, seed=seed).fit(X)
    ref = SkKMeans(k, n_init=n_init, random_state=seed).fit(X)
    assert abs(ours.inertia_ - ref.inertia_) <= 0.01 * ref.inertia_, (ours.inertia_, ref.inertia_)
    d2 = ((X[:, None] - ours.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_allclose(ours.inertia_, d2.min(1).sum())  # inertia is what it says
    np.testing.assert_array_equal(ours.labels_, ours.predict(X))
    np.testing.assert_array_equal(ours.labels_, d2.argmin(1))


@pytest.fixture(scope="module")
def review_vectors(minilm):
    """400 Rotten Tomatoes sentences as MiniLM vectors, reduced to 10 dimensions (as chapter 9 clusters them)."""
    from llmcourse.data import rotten_tomatoes

    texts = [example.text for example in rotten_tomatoes("train")[:400]]
    return PCA(10).fit_transform(layer_embeddings(texts, *minilm, cache=False)[-1])


@pytest.mark.parametrize("seed", SEEDS)
def test_kmeans_on_sentence_vectors_within_one_percent_of_scikit_learn(review_vectors, seed):
    from sklearn.cluster import KMeans as SkKMeans

    ours = KMeans(5, n_init=5, seed=seed).fit(review_vectors)
    ref = SkKMeans(5, n_init=5, random_state=seed).fit(review_vectors)
    # measured over seeds 0-7: within 0.3%
    assert abs(ours.inertia_ - ref.inertia_) <= 0.01 * ref.inertia_, (ours.inertia_, ref.inertia_)


@pytest.mark.parametrize("seed", SEEDS)
def test_kmeans_finds_well_separated_clusters(seed):
    from sklearn.metrics import adjusted_rand_score

    X, truth = _blobs(seed, spread=0.3)
    assert adjusted_rand_score(truth, KMeans(4, n_init=3, seed=seed).fit(X).labels_) == 1.0


def test_kmeans_plus_plus_draws_by_squared_distance():
    # four points at 0 and one at 10: after a first pick at 0, only the far point has a distance,
    # so D^2 sampling always returns both places; uniform drawing would often pick 0 twice
    X = np.array([[0.0], [0.0], [0.0], [0.0], [10.0]])
    for seed in range(40):
        centres = kmeans_plus_plus(X, 2, np.random.default_rng(seed))
        assert sorted(centres[:, 0]) == [0.0, 10.0]
    # probabilities proportional to d^2: from a first centre at 0, points at 1 and 3 are
    # chosen 1 : 9 (a draw proportional to d would give 1 : 3)
    X = np.array([[0.0], [1.0], [3.0]])
    picks = []
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        centres = kmeans_plus_plus(X, 2, rng)
        if centres[0, 0] == 0.0:
            picks.append(centres[1, 0])
    share_far = np.mean(np.array(picks) == 3.0)
    assert 0.86 < share_far < 0.94, share_far


def test_an_empty_cluster_moves_to_the_worst_served_point():
    X, _ = _blobs(0, n=100, k=3, spread=0.5)
    far = np.full((1, X.shape[1]), 1e3)  # a starting centre no point is nearest to
    centers, labels, _ = lloyd(X, np.vstack([X[:2], far]), max_iter=100, tol=1e-4)
    assert np.isfinite(centers).all()
    assert len(np.unique(labels)) == 3  # no cluster left empty


@pytest.mark.parametrize("k, n, match", [(5, 4, "n_clusters"), (0, 4, "n_clusters"), (2.5, 4, "n_clusters")])
def test_kmeans_names_bad_input(k, n, match):
    with pytest.raises(ValueError, match=match):
        KMeans(k).fit(np.random.default_rng(0).normal(size=(n, 2)))
    with pytest.raises(ValueError, match="empty"):
        KMeans(1).fit(np.zeros((0, 2)))


# ----------------------------------------------------------------------------- topics


def test_class_tfidf_by_hand():
    counts = np.array([[4, 0, 2], [0, 6, 2]])  # 2 classes, 3 words; A = (6 + 8) / 2 = 7
    expected = np.array([
        [4 / 6 * np.log(1 + 7 / 4), 0, 2 / 6 * np.log(1 + 7 / 4)],
        [0, 6 / 8 * np.log(1 + 7 / 6), 2 / 8 * np.log(1 + 7 / 4)],
    ])
    np.testing.assert_allclose(class_tfidf(counts), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_class_tfidf_matches_bertopic(seed):
    ctfidf = pytest.importorskip("bertopic.vectorizers")
    from scipy import sparse

    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.5, size=(6, 40)) * (rng.random((6, 40)) < 0.5)
    counts[:, 1] = 0  # a word in no class
    counts[:, 0] += 1  # no class without words
    counts[0, 0] += (-counts.sum()) % 6  # BERTopic rounds A down to an integer: make the mean exact
    with np.errstate(divide="ignore"):  # BERTopic divides by the zero count of word 1
        ref = ctfidf.ClassTfidfTransformer().fit_transform(sparse.csr_matrix(counts)).toarray()
    np.testing.assert_allclose(class_tfidf(counts), ref, atol=1e-12)


def test_class_tfidf_names_a_class_without_words():
    with pytest.raises(ValueError, match="counts.*row\\) 1 has no words"):
        class_tfidf(np.array([[1, 2], [0, 0], [3, 0]]))


def test_class_counts_and_top_words():
    docs = ["great acting great story", "great fun", "boring plot boring pacing", "boring mess", "fun story"]
    from sklearn.feature_extraction.text import CountVectorizer

    counts, vocab, classes = class_counts(docs, [1, 1, 0, 0, 1], CountVectorizer())
    assert list(classes) == [0, 1]
    row = dict(zip(vocab, counts.toarray()[1]))  # class 1: documents 0, 1 and 4 joined
    assert row["great"] == 3 and row["story"] == 2 and row["fun"] == 2 and row["boring"] == 0
    words = top_words(class_tfidf(counts), vocab, n=2)
    assert words == [["boring", "mess"], ["great", "fun"]]  # ties: vocabulary order ("fun" < "story")


def test_npmi_by_hand():
    docs = ["good film", "Good film!", "good plot", "plot dull"]  # words as CountVectorizer splits them
    p_ab, p_a, p_b = 2 / 4, 3 / 4, 2 / 4  # good & film, good, film
    by_hand = np.log(p_ab / (p_a * p_b)) / -np.log(p_ab)
    np.testing.assert_allclose(npmi_coherence([["good", "film"]], docs), [by_hand])
    np.testing.assert_allclose(npmi_coherence([["film", "dull"]], docs), [-1.0])  # never together
    np.testing.assert_allclose(npmi_coherence([["tall", "man"]], ["tall man", "man tall very"]), [1.0])  # always
    good_dull = npmi_coherence([["good", "dull"]], docs)[0]
    three = npmi_coherence([["good", "film", "dull"]], docs)[0]  # the mean over its three pairs
    np.testing.assert_allclose(three, (by_hand + good_dull - 1.0) / 3)
    assert good_dull == -1.0 and 0 < by_hand < 1


def test_topic_diversity_by_hand():
    assert topic_diversity([["a", "b"], ["c", "d"]]) == 1.0
    assert topic_diversity([["a", "b"], ["a", "c"]]) == 0.75
    assert topic_diversity([["a", "b", "x"], ["a", "c", "x"]], top_n=2) == 0.75
    with pytest.raises(ValueError, match="topics"):
        topic_diversity([])
