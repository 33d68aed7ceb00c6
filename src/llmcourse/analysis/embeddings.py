"""Sentence vectors from the course's ``Bert``: the input of every analysis in chapter 9.

- :func:`layer_embeddings`: for each text, the mean of its real tokens' vectors at
  every depth of the network (the embedding layer, then each block), as one
  (L + 1, N, d) array. Probing reads sentiment off each layer of it.
- :func:`sentence_embeddings`: the last layer of the same, which is exactly how
  all-MiniLM-L6-v2 makes its sentence embeddings (mean pooling; ``normalize=True``
  adds the unit length its sentence-transformers pipeline ends with).

Texts are encoded in batches sorted by length, so little padding is computed;
mean pooling ignores padding, so a text's vector does not depend on its batch.
Results are cached under :func:`~llmcourse.training.corpus.cache_dir`, keyed by a
hash of the model's weights, the tokenizer's vocabulary, the texts and the
settings: a second call with the same inputs reads the file instead of running
the model.

Introduced in: chapter 9, Interpreting embeddings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmcourse.models.bert import mean_pool
from llmcourse.training.corpus import cache_dir, digest, texts_digest


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer of ``model`` (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: there is nothing to embed")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is a {type(texts[bad[0]]).__name__}, not a string")
    return texts


def _default_model_and_tokenizer(model, tokenizer):
    if model is None:
        from llmcourse.models import from_minilm

        model = from_minilm()
    if tokenizer is None:
        from llmcourse.tokenizers import WordPieceTokenizer

        tokenizer = WordPieceTokenizer.from_minilm()
    return model, tokenizer


@torch.no_grad()
def _compute_layers(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    """(L + 1, N, d) float32: mean-pooled hidden states of every layer, rows in the order of ``texts``."""
    device = next(model.parameters()).device
    pad_id = tokenizer.token_to_id(tokenizer.pad_token)
    rows = []
    for text in texts:
        ids = tokenizer.encode(text)
        rows.append(ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:])  # keep [SEP]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths share a batch
    out = None
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(rows[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)  # (B, T)
        for j, i in enumerate(chunk):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
        mask = (ids != pad_id).long().to(device)  # (B, T)
        hidden = model(ids.to(device), mask, output_hidden_states=True).hidden_states  # L + 1 of (B, T, d)
        pooled = torch.stack([mean_pool(h, mask) for h in hidden]).float().cpu().numpy()  # (L + 1, B, d)
        if out is None:
            out = np.empty((pooled.shape[0], len(texts), pooled.shape[2]), dtype=np.float32)
        out[:, chunk] = pooled
    model.train(was_training)
    return out


def layer_embeddings(
    texts: Sequence[str],
    model: nn.Module | None = None,
    tokenizer=None,
    batch_size: int = 64,
    max_length: int = 128,
    cache: bool = True,
) -> np.ndarray:
    """Mean-pooled hidden states of every layer: (L + 1, N, d) float32; row 0 is the embedding layer.

    ``model`` and ``tokenizer`` default to all-MiniLM-L6-v2 in the course's ``Bert``
    and its WordPiece tokenizer. Texts longer than ``max_length`` tokens are cut
    (keeping the final [SEP]).

    Introduced in: chapter 9, Interpreting embeddings.
    """
    texts = _check_texts(texts)
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (2 if name == "max_length" else 1):
            raise ValueError(f"{name} must be a positive integer (max_length at least 2), got {value!r}")
    model, tokenizer = _default_model_and_tokenizer(model, tokenizer)
    if not cache:
        return _compute_layers(model, tokenizer, texts, batch_size, max_length)
    vocab = digest(*(tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)))
    key = digest(weights_digest(model), vocab, texts_digest(texts), str(max_length))[:32]
    path = cache_dir() / "embeddings" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    layers = _compute_layers(model, tokenizer, texts, batch_size, max_length)
    _save_atomic(path, layers)
    return layers


def sentence_embeddings(
    texts: Sequence[str],
    model: nn.Module | None = None,
    tokenizer=None,
    normalize: bool = False,
    **kwargs,
) -> np.ndarray:
    """(N, d) sentence vectors: the last layer of :func:`layer_embeddings` (mean pooling).

    With ``normalize=True`` every vector has length 1, as the sentence-transformers
    all-MiniLM-L6-v2 pipeline returns them (cosine similarity is then a dot product).

    Introduced in: chapter 9, Interpreting embeddings.
    """
    vectors = layer_embeddings(texts, model, tokenizer, **kwargs)[-1]  # (N, d)
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)  # readers see the whole file or none


__all__ = ["layer_embeddings", "sentence_embeddings", "weights_digest"]
