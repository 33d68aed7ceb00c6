"""Labelled sentences as padded token ids, ready for the course's ``Trainer``.

:class:`LabelledSentences` holds a (N, T) matrix of ids, each row one sentence
padded with ``pad_id``, and a (N,) vector of class labels. The ``Trainer`` was
written for token streams and asks its data only for a length in tokens and the
largest id, which this class answers; the :class:`~llmcourse.training.Classification`
objective draws its batches from it.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def check_labels(labels: Tensor | Sequence[int], n_classes: int, field: str = "labels") -> Tensor:
    """``labels`` as an int64 tensor, or a ValueError naming ``field`` when one is outside 0..n_classes-1.

    Introduced in: chapter 8, Fine-tuning.
    """
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{field} must be integer class ids, got dtype {labels.dtype}")
    labels = labels.long()
    outside = labels[(labels < 0) | (labels >= n_classes)]
    if len(outside):
        raise ValueError(f"{field} must lie in 0..{n_classes - 1} (n_classes={n_classes}), got {outside[0].item()}")
    return labels


@dataclass(frozen=True)
class LabelledSentences:
    """Padded sentences and their labels; ``len()`` counts token slots, as the ``Trainer`` expects.

    Introduced in: chapter 8, Fine-tuning.
    """

    ids: Tensor  # (N, T) int64, padded with pad_id on the right
    labels: Tensor  # (N,) int64 in 0..n_classes-1
    n_classes: int = 2
    pad_id: int = 0

    def __post_init__(self):
        if self.ids.dim() != 2 or self.ids.is_floating_point():
            raise ValueError(f"ids must be a (N, T) integer tensor, got shape {tuple(self.ids.shape)}")
        labels = check_labels(self.labels, self.n_classes)
        if len(labels) != len(self.ids):
            raise ValueError(f"labels has {len(labels)} entries for {len(self.ids)} rows of ids")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "ids", self.ids.long())

    @property
    def n_sentences(self) -> int:
        return self.ids.size(0)

    @property
    def width(self) -> int:
        """T: the padded length of every row."""
        return self.ids.size(1)

    def attention_mask(self) -> Tensor:
        """(N, T): 1 on tokens, 0 on padding."""
        return (self.ids != self.pad_id).long()

    def __len__(self) -> int:
        return self.ids.numel()  # token slots, the unit the Trainer's checks use

    def max(self) -> Tensor:
        return self.ids.max()


def encode_sentences(
    tokenizer, texts: Sequence[str], labels: Sequence[int], n_classes: int = 2, max_length: int = 128
) -> LabelledSentences:
    """Tokenize ``texts`` as ``[CLS] ... [SEP]``, cut at ``max_length`` tokens (keeping the final [SEP]), pad.

    Introduced in: chapter 8, Fine-tuning.
    """
    if len(texts) != len(labels):
        raise ValueError(f"texts has {len(texts)} entries but labels has {len(labels)}")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    pad_id = tokenizer.token_to_id(tokenizer.pad_token)
    rows = []
    for text in texts:
        ids = tokenizer.encode(text)
        rows.append(ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:])
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (N, T)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return LabelledSentences(ids, torch.as_tensor(list(labels)), n_classes, pad_id)
