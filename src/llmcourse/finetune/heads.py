"""A classifier on top of the course's :class:`~llmcourse.models.Bert`, and how much of it trains.

``BertClassifier`` = encoder -> pooling (mean or [CLS]) -> dropout -> one linear
layer giving a score per class. The regimes of fine-tuning differ only in which
parameters may change:

- :func:`freeze` the encoder: only the head trains (the encoder is a fixed feature extractor);
- :func:`unfreeze_last` ``k`` blocks: the top of the encoder adapts too;
- nothing frozen: full fine-tuning.

:func:`count_trainable` says exactly how many numbers each regime updates.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from torch import Tensor, nn

from llmcourse.finetune.pooling import POOLINGS, pool
from llmcourse.models.bert import Bert, BertConfig


class BertClassifier(nn.Module):
    """Scores ``n_classes`` classes for each input sentence from a :class:`Bert` encoder.

    BERT's own pooler (dense + tanh on [CLS]) is used by neither pooling, so it is
    frozen here: a parameter that receives no gradient should not count as trained.
    ``config`` is the encoder's, which is what the course's ``Trainer`` reads
    (vocabulary size, context length) and saves in checkpoints.

    Introduced in: chapter 8, Fine-tuning.
    """

    def __init__(self, encoder: Bert, n_classes: int = 2, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.encoder, self.n_classes, self.pooling = encoder, n_classes, pooling
        self.encoder.pooler.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.d_model, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def config(self) -> BertConfig:
        return self.encoder.config

    def sentence_vectors(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, T) ids and (B, T) mask -> (B, d_model) pooled sentence vectors."""
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()  # BERT's [PAD] is id 0
        hidden = self.encoder(input_ids, attention_mask).last_hidden_state  # (B, T, d_model)
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, T) ids and (B, T) mask (1 = token, 0 = padding; default: ids != 0) -> (B, n_classes) logits."""
        return self.head(self.dropout(self.sentence_vectors(input_ids, attention_mask)))


def freeze(module: nn.Module) -> nn.Module:
    """Stop every parameter of ``module`` from training (``requires_grad = False``); returns it.

    Introduced in: chapter 8, Fine-tuning.
    """
    module.requires_grad_(False)
    return module


def unfreeze_last(model: Bert | BertClassifier, k: int) -> Bert | BertClassifier:
    """Let the last ``k`` transformer blocks of the encoder train again; returns ``model``.

    ``k = 0`` changes nothing; ``k`` = the number of blocks unfreezes every block
    (the embeddings stay as they are).

    Introduced in: chapter 8, Fine-tuning.
    """
    encoder = model.encoder if isinstance(model, BertClassifier) else model
    n_blocks = len(encoder.blocks)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if k > n_blocks:
        raise ValueError(f"k={k} is larger than the number of blocks ({n_blocks})")
    for block in list(encoder.blocks)[n_blocks - k :]:
        block.requires_grad_(True)
    return model


def count_trainable(module: nn.Module) -> int:
    """Number of parameters (scalars) that training would update; shared tensors count once.

    Introduced in: chapter 8, Fine-tuning.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (scalars), trainable or not; shared tensors count once.

    Introduced in: chapter 8, Fine-tuning.
    """
    return sum(p.numel() for p in module.parameters())
