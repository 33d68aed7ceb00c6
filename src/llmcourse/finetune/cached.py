"""Train only the top of a frozen encoder, fast: run the frozen bottom once and keep what it says.

When the embeddings and the first ``n - k`` blocks of an encoder are frozen, their
output for a given sentence never changes during training. :func:`frozen_states`
computes it once for every sentence (forward only, no autograd graph), and
:class:`TopClassifier` is the rest of a :class:`~llmcourse.finetune.BertClassifier`:
its last ``k`` blocks, its pooling and its head, run on those stored states. The
blocks and the head are the classifier's own modules, shared, so training the top
trains the classifier. ``k = 0`` is a head on the frozen encoder.

Padding is stored as exact zero vectors: a LayerNorm output (what every block ends
with) never is one, so the padding mask can be read back from the states themselves.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.finetune.data import LabelledSentences, check_labels
from llmcourse.finetune.heads import BertClassifier
from llmcourse.finetune.pooling import pool
from llmcourse.nn import padding_mask
from llmcourse.training.objectives import similar_length_rows
from llmcourse.device import at_least_float32


def _check_k(model: BertClassifier, k: int) -> int:
    n_blocks = len(model.encoder.blocks)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if k > n_blocks:
        raise ValueError(f"k={k} is larger than the number of blocks ({n_blocks})")
    return n_blocks - k


def states_mask(states: Tensor) -> Tensor:
    """(B, T, d) stored states -> (B, T) mask: 1 where a token is, 0 on the zero vectors of padding."""
    return (states != 0).any(dim=-1).long()


@dataclass(frozen=True)
class CachedStates:
    """The frozen bottom's output for N sentences, padded with zero vectors, and their labels.

    ``len()`` counts token slots and ``block_size`` is the padded width, as the
    ``Trainer`` expects of its data; there are no token ids to check against a vocabulary.

    Introduced in: chapter 8, Fine-tuning.
    """

    states: Tensor  # (N, T, d) float, zero vectors on padding
    labels: Tensor  # (N,) int64
    n_classes: int = 2
    holds_token_ids = False  # read by the Trainer's checks

    def __post_init__(self):
        if self.states.dim() != 3 or not self.states.is_floating_point():
            raise ValueError(f"states must be a (N, T, d) float tensor, got shape {tuple(self.states.shape)}")
        labels = check_labels(self.labels, self.n_classes)
        if len(labels) != len(self.states):
            raise ValueError(f"labels has {len(labels)} entries for {len(self.states)} sentences")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_lengths", states_mask(self.states).sum(1))  # read at every batch: once

    @property
    def n_sentences(self) -> int:
        return self.states.size(0)

    @property
    def width(self) -> int:
        return self.states.size(1)

    @property
    def lengths(self) -> Tensor:
        """(N,) tokens in each sentence."""
        return self._lengths

    def __len__(self) -> int:
        return self.states.size(0) * self.states.size(1)


def longest_first(lengths: Tensor, batch_size: int) -> Iterator[tuple[Tensor, int]]:
    """Batches of row indices, longest sentences first, each with its longest length: (rows, width).

    Sentences of similar length share a batch, so little padding is computed.
    Introduced in: chapter 8, Fine-tuning.
    """
    order = torch.argsort(lengths, descending=True, stable=True)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, int(lengths[rows].max())


@torch.inference_mode()
def frozen_states(model: BertClassifier, data: LabelledSentences, k: int, batch_size: int = 64) -> CachedStates:
    """What the embeddings and the first ``n - k`` blocks of ``model``'s encoder make of every sentence.

    Sentences run in order of length, so a batch holds little padding; the result
    is in the original order. Introduced in: chapter 8, Fine-tuning.
    """
    bottom = _check_k(model, k)
    encoder, mask = model.encoder, data.attention_mask()  # (N, T)
    was_training = encoder.training
    encoder.eval()
    states = torch.zeros(data.n_sentences, data.width, encoder.config.d_model)  # (N, T, d)
    for rows, width in longest_first(mask.sum(1), batch_size):
        ids, m = data.ids[rows, :width], mask[rows, :width]  # (B, T')
        x = encoder.embeddings(ids, torch.zeros_like(ids))  # (B, T', d)
        for block in list(encoder.blocks)[:bottom]:
            x = block(x, padding_mask(m)).hidden
        states[rows, :width] = x.float() * m.unsqueeze(-1)  # padding -> exact zeros
    encoder.train(was_training)
    return CachedStates(states, data.labels, data.n_classes)


@torch.inference_mode()
def top_states(model: BertClassifier, cached: CachedStates, k: int, batch_size: int = 128) -> CachedStates:
    """Run ``model``'s last ``k`` blocks on ``cached`` (the output of the blocks below them): the final states.

    Introduced in: chapter 8, Fine-tuning.
    """
    _check_k(model, k)
    blocks = list(model.encoder.blocks)[len(model.encoder.blocks) - k :]
    modes = [block.training for block in blocks]
    for block in blocks:
        block.eval()
    out = torch.zeros_like(cached.states)  # (N, T, d)
    for rows, width in longest_first(cached.lengths, batch_size):
        x, m = cached.states[rows, :width], states_mask(cached.states[rows, :width])  # (B, T', d), (B, T')
        for block in blocks:
            x = block(x, padding_mask(m)).hidden
        out[rows, :width] = x.float() * m.unsqueeze(-1)
    for block, mode in zip(blocks, modes):
        block.train(mode)
    return CachedStates(out, cached.labels, cached.n_classes)


class TopClassifier(nn.Module):
    """The last ``k`` blocks, pooling and head of ``model``, run on stored states (shared modules).

    Introduced in: chapter 8, Fine-tuning.
    """

    def __init__(self, model: BertClassifier, k: int):
        super().__init__()
        bottom = _check_k(model, k)
        self.blocks = nn.ModuleList(list(model.encoder.blocks)[bottom:])
        self.head, self.dropout, self.pooling = model.head, model.dropout, model.pooling
        self.config = model.config  # what the Trainer reads and saves

    def forward(self, states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, T, d) stored states -> (B, n_classes) logits."""
        mask = states_mask(states) if attention_mask is None else attention_mask  # (B, T)
        x = states
        for block in self.blocks:
            x = block(x, padding_mask(mask)).hidden  # (B, T, d)
        return self.head(self.dropout(pool(x, mask, self.pooling)))


@dataclass(frozen=True)
class CachedClassification:
    """The ``Classification`` objective for :class:`CachedStates`: rows drawn at random, cut to the longest.

    Introduced in: chapter 8, Fine-tuning.
    """

    block_size: int
    n_classes: int = 2
    pool: int = 1
    name: str = "classification on cached states"

    def batch(self, data: CachedStates, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = similar_length_rows(data.lengths, batch_size, self.pool, generator)  # (B,)
        longest = int(data.lengths[rows].max())
        return data.states[rows, : max(longest, 1)], data.labels[rows]  # (B, T', d), (B,)

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        logits = model(inputs)  # (B, n_classes); the mask comes from the zero vectors
        return F.cross_entropy(at_least_float32(logits), targets)


@torch.inference_mode()
def cached_scores(top: TopClassifier, data: CachedStates, batch_size: int = 128) -> Tensor:
    """(N,) probability of class 1 for every stored sentence (eval mode, longest first).

    Introduced in: chapter 8, Fine-tuning.
    """
    was_training = top.training
    top.eval()
    scores = torch.empty(data.n_sentences)
    for rows, width in longest_first(data.lengths, batch_size):
        logits = top(data.states[rows, :width])
        scores[rows] = torch.softmax(logits.float(), dim=-1)[:, 1]
    top.train(was_training)
    return scores


__all__ = ["CachedClassification", "CachedStates", "TopClassifier", "cached_scores", "frozen_states", "longest_first",
           "states_mask", "top_states"]
