"""The pretraining corpus as one long stream of token ids, cached on disk.

Step 1 of the training loop, data preparation: train a byte-level BPE tokenizer
on IMDB reviews, encode every review, join them with an ``<|endoftext|>`` token,
and store the ids as a flat binary file that is read back as a NumPy memmap
(the whole corpus never has to fit in memory, and reading a window is a slice).

Everything is cached under :func:`cache_dir` (``LLMCOURSE_CACHE`` overrides the
default, the user's cache folder). A cached file's name carries a SHA-256 of
all its inputs (the tokenizer's JSON, every text, the format version), so a
changed tokenizer or corpus builds a new file instead of reusing a stale one.
Files are written to a temporary name and renamed, so an interrupted build
never leaves a half-written file under the final name.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import platformdirs

from llmcourse.data import imdb_texts
from llmcourse.tokenizers import GPT4_SPLIT_PATTERN, BPETokenizer
from llmcourse.training.checkpoint import write_atomic

CACHE_ENV = "LLMCOURSE_CACHE"
FORMAT_VERSION = 1
END_OF_TEXT = "<|endoftext|>"  # separates documents in the stream (GPT-2's name)
MASK = "<|mask|>"  # the masked-LM objective's [MASK]
SPECIAL_TOKENS = (END_OF_TEXT, MASK)


def cache_dir() -> Path:
    """The folder for cached tokenizers, corpora and checkpoints (created if missing).

    ``LLMCOURSE_CACHE`` overrides the default, the user's cache folder
    (``~/.cache/llmcourse`` on Linux).

    Introduced in: the Pretraining chapter.
    """
    override = os.environ.get(CACHE_ENV, "").strip()
    path = Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("llmcourse"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest(*parts: str | bytes) -> str:
    """SHA-256 of ``parts``, each length-prefixed so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def texts_digest(texts: Sequence[str]) -> str:
    """One hash for a list of documents (order and boundaries included)."""
    return digest(*texts)


# ----------------------------------------------------------------------------- tokenizer


def imdb_tokenizer(vocab_size: int = 2_048, n_documents: int = 2_000) -> BPETokenizer:
    """Byte-level BPE (GPT-4 pre-split) trained on the first ``n_documents`` IMDB training reviews.

    Its special tokens are ``<|endoftext|>`` and ``<|mask|>``. Training takes a few
    seconds; the result is cached as JSON and loaded on later calls.

    Introduced in: the Pretraining chapter.
    """
    texts = imdb_texts("train")[:n_documents]
    key = digest(str(FORMAT_VERSION), str(vocab_size), GPT4_SPLIT_PATTERN, *SPECIAL_TOKENS, texts_digest(texts))
    path = cache_dir() / f"imdb-bpe-{vocab_size}-{key[:16]}.json"
    if path.is_file():
        return BPETokenizer.load(path)
    tokenizer = BPETokenizer.train(texts, vocab_size, pattern=GPT4_SPLIT_PATTERN, special_tokens=SPECIAL_TOKENS)
    write_atomic(path, tokenizer.save)
    return tokenizer


# ----------------------------------------------------------------------------- token stream

_worker_tokenizer: BPETokenizer | None = None


def _init_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = BPETokenizer.from_json(tokenizer_json)


def _encode_documents(texts: list[str]) -> np.ndarray:
    """Ids of ``texts``, each followed by ``<|endoftext|>`` (runs in a worker process)."""
    tok = _worker_tokenizer
    eot = tok.special_tokens[END_OF_TEXT]
    ids: list[int] = []
    for text in texts:
        ids.extend(tok.encode(text, allowed_special="none"))  # a review is plain text
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def encode_corpus(tokenizer: BPETokenizer, texts: Sequence[str], workers: int | None = None) -> np.ndarray:
    """All ``texts`` as one stream of ids, documents separated by ``<|endoftext|>``.

    Encoding is pure Python, so the documents are shared among ``workers``
    processes (default: one per CPU core, at most 8).

    Introduced in: the Pretraining chapter.
    """
    if END_OF_TEXT not in tokenizer.special_tokens:
        raise ValueError(f"the tokenizer needs the special token {END_OF_TEXT!r} to separate documents")
    workers = workers or min(8, os.cpu_count() or 1)
    chunks = [list(texts[i : i + 256]) for i in range(0, len(texts), 256)]
    # Workers are forked (Linux): they run pure Python and start in milliseconds.
    # Elsewhere the encoding runs in this process: "spawn" would re-import the caller's script.
    if workers == 1 or len(chunks) == 1 or "fork" not in multiprocessing.get_all_start_methods():
        _init_worker(tokenizer.to_json())
        parts = [_encode_documents(c) for c in chunks]
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, context, _init_worker, (tokenizer.to_json(),)) as pool:
            parts = list(pool.map(_encode_documents, chunks))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return ids.astype(token_dtype(tokenizer.vocab_size))


def cached_tokens(tokenizer: BPETokenizer, texts: Sequence[str], name: str) -> np.memmap:
    """The token stream of ``texts`` as a read-only memmap, built once and cached.

    The file name holds a hash of the tokenizer and of every text, so changing
    either builds a new file.

    Introduced in: the Pretraining chapter.
    """
    key = digest(str(FORMAT_VERSION), tokenizer.to_json(), texts_digest(texts))
    dtype = token_dtype(tokenizer.vocab_size)
    path = cache_dir() / f"{name}-{key[:16]}.{dtype.name}.bin"
    if not path.is_file():
        ids = encode_corpus(tokenizer, texts)
        write_atomic(path, lambda tmp: ids.tofile(tmp))
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)  # an empty corpus (np.memmap cannot map 0 bytes)
    return np.memmap(path, dtype=dtype, mode="r")


def imdb_tokens(tokenizer: BPETokenizer, split: str) -> np.memmap:
    """The IMDB ``"train"`` or ``"validation"`` reviews as one cached stream of ids.

    Introduced in: the Pretraining chapter.
    """
    return cached_tokens(tokenizer, imdb_texts(split), f"imdb-{split}")
