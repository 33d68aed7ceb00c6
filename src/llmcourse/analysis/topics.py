"""Naming clusters with words, and measuring how good the names are.

- :func:`class_counts`: how often each word occurs in each cluster ("class"), as a
  (C, V) matrix, from scikit-learn's ``CountVectorizer``.
- :func:`class_tfidf`: **class-based TF-IDF**, BERTopic's way to find the words
  that characterise a cluster (Grootendorst 2022):

      W(t, c) = tf(t, c) / |c| · log(1 + A / f_t)

  with tf(t, c) the count of word t in class c, |c| the number of words in c,
  f_t the count of t over all classes and A the mean number of words per class.
  A word scores high when it is frequent in the class and rare overall.
- :func:`top_words`: the n best-scoring words of each class.
- :func:`npmi_coherence`: do a topic's words occur *together* in documents?
  The normalised pointwise mutual information of a pair,
  NPMI = log(P(a, b) / (P(a) P(b))) / -log P(a, b), is 1 for words that always
  occur together, 0 for independent ones and -1 for words never seen together
  (Bouma 2009); a topic's coherence is its mean over pairs of its top words.
- :func:`topic_diversity`: the share of distinct words among all topics' top
  words (Dieng et al. 2020): 1 when no two topics share a word.

Introduced in: chapter 9, Interpreting embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import sparse


def class_counts(documents: Sequence[str], labels: Sequence[int], vectorizer=None):
    """Word counts per class: (a (C, V) sparse matrix, the vocabulary, the class ids in row order).

    As BERTopic does, each class's documents are joined into one document, and
    ``vectorizer`` (a scikit-learn ``CountVectorizer``; default: English stop words
    removed, words found in at least 2 classes) is fitted on those C documents.
    Rows follow the sorted distinct labels.

    Introduced in: chapter 9, Interpreting embeddings.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    documents, labels = list(documents), np.asarray(labels)
    if not documents:
        raise ValueError("documents is empty")
    if len(labels) != len(documents):
        raise ValueError(f"labels has {len(labels)} entries for {len(documents)} documents")
    vectorizer = vectorizer or CountVectorizer(stop_words="english", min_df=2)
    classes = np.unique(labels)
    joined = [" ".join(d for d, label in zip(documents, labels) if label == c) for c in classes]
    counts = vectorizer.fit_transform(joined)  # (C, V)
    return counts.tocsr(), vectorizer.get_feature_names_out(), classes


def class_tfidf(counts) -> np.ndarray:
    """(C, V) word counts per class -> (C, V) c-TF-IDF weights, W(t, c) = tf(t, c)/|c| · log(1 + A/f_t).

    A word that occurs in no class (f_t = 0) gets weight 0. A class with no
    words at all is an error: it cannot be described by words.

    Introduced in: chapter 9, Interpreting embeddings.
    """
    counts = counts.toarray() if sparse.issparse(counts) else np.asarray(counts)
    counts = counts.astype(np.float64)
    if counts.ndim != 2 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty (n_classes, n_words) matrix, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must not be negative")
    words_per_class = counts.sum(axis=1)  # (C,) |c|
    empty = np.flatnonzero(words_per_class == 0)
    if len(empty):
        raise ValueError(f"counts: class (row) {empty[0]} has no words in the vocabulary, so it has no keywords; "
                         "widen the vocabulary or drop the class")
    tf = counts / words_per_class[:, None]  # (C, V) word frequency within each class
    A = words_per_class.mean()  # mean number of words per class
    f = counts.sum(axis=0)  # (V,) frequency of each word over all classes
    idf = np.log(1 + A / np.where(f > 0, f, 1.0))  # (V,)
    return np.where(f > 0, tf * idf, 0.0)


def top_words(weights, vocabulary: Sequence[str], n: int = 10) -> list[list[str]]:
    """The ``n`` highest-weighted words of each row of ``weights`` (C, V), best first (ties: vocabulary order).

    Introduced in: chapter 9, Interpreting embeddings.
    """
    weights = weights.toarray() if sparse.issparse(weights) else np.asarray(weights)
    vocabulary = np.asarray(vocabulary)
    if weights.shape[1] != len(vocabulary):
        raise ValueError(f"weights has {weights.shape[1]} columns for a vocabulary of {len(vocabulary)} words")
    order = np.argsort(-weights, axis=1, kind="stable")[:, :n]  # (C, n)
    return [list(vocabulary[row]) for row in order]


def npmi_coherence(topics: Sequence[Sequence[str]], documents: Sequence[str]) -> np.ndarray:
    """NPMI coherence of each topic (a list of words), from document co-occurrence in ``documents``.

    A word's probability is the share of documents that contain it; a pair's, the
    share that contain both. A pair never seen together scores -1; one that
    occurs in every document together, 1. Documents are split into lower-cased
    words by scikit-learn's ``CountVectorizer``, as in :func:`class_counts`.
    Returns one coherence per topic, in [-1, 1].

    Introduced in: chapter 9, Interpreting embeddings.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    documents = list(documents)
    if not documents:
        raise ValueError("documents is empty: coherence needs a reference corpus")
    if not topics or any(len(t) < 2 for t in topics):
        raise ValueError("every topic needs at least 2 words to form a pair")
    words = sorted({w.lower() for t in topics for w in t})
    index = {w: i for i, w in enumerate(words)}
    present = CountVectorizer(vocabulary=words, binary=True).fit_transform(documents)  # (N, W) 0/1
    together = (present.T @ present).toarray() / len(documents)  # (W, W): P(a, b); diagonal P(a)
    scores = []
    for topic in topics:
        ids = [index[w.lower()] for w in topic]
        pairs = [_npmi(together[a, a], together[b, b], together[a, b]) for a, b in combinations(ids, 2)]
        scores.append(float(np.mean(pairs)))
    return np.array(scores)


def _npmi(p_a: float, p_b: float, p_ab: float) -> float:
    if p_ab == 0:
        return -1.0  # never together
    if p_ab == 1:
        return 1.0  # together in every document (and -log P(a, b) would be 0)
    return float(np.log(p_ab / (p_a * p_b)) / -np.log(p_ab))


def topic_diversity(topics: Sequence[Sequence[str]], top_n: int | None = None) -> float:
    """Distinct words among the first ``top_n`` words of every topic, over their total number (0..1].

    Introduced in: chapter 9, Interpreting embeddings.
    """
    if not topics:
        raise ValueError("topics is empty")
    words = [w for t in topics for w in (t[:top_n] if top_n else t)]
    if not words:
        raise ValueError("the topics hold no words")
    return len(set(words)) / len(words)


__all__ = ["class_counts", "class_tfidf", "npmi_coherence", "top_words", "topic_diversity"]
