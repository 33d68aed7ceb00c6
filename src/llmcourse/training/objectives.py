"""The two pretraining objectives as small objects the trainer calls.

An objective makes a batch from the token stream and computes the loss of a
model on it:

- :class:`CausalLM` (GPT): predict every next token; the loss covers every position.
- :class:`MaskedLM` (BERT): recover the 15% of chosen tokens; the loss covers those only.
- :class:`Classification` (fine-tuning): one label per sentence; the loss is the
  cross-entropy of the classifier's scores (introduced in chapter 8, Fine-tuning).

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.device import at_least_float32
from llmcourse.training.batches import IGNORE_INDEX, causal_lm_batch, mlm_batch


def next_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of (B, T, V) logits against (B, T) next-token targets (-100 = ignore).

    Introduced in: the Pretraining chapter.
    """
    return F.cross_entropy(at_least_float32(logits.flatten(0, 1)), targets.flatten(), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def stream_loss(model: nn.Module, tokens: np.ndarray | Tensor, block_size: int, batch_size: int = 32) -> float:
    """Mean next-token loss of a causal LM over a whole token stream, cut into consecutive windows.

    Every token after the first is predicted exactly once (from the tokens before it
    in its window), so the result can be compared with an n-gram model's loss on
    the same stream.

    Introduced in: the Pretraining chapter.
    """
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    device = next(model.parameters()).device
    n_windows = (len(ids) - 1) // block_size
    inputs = ids[: n_windows * block_size].view(n_windows, block_size)  # (N, T)
    targets = ids[1 : n_windows * block_size + 1].view(n_windows, block_size)  # (N, T) shifted by one
    batches = [(inputs[i : i + batch_size], targets[i : i + batch_size]) for i in range(0, n_windows, batch_size)]
    tail = n_windows * block_size
    if tail < len(ids) - 1:  # the tokens left over form one shorter window
        batches.append((ids[tail:-1][None], ids[tail + 1 :][None]))
    total = 0.0
    for x, y in batches:
        logits = model(x.to(device)).logits  # (B, T, V)
        total += F.cross_entropy(at_least_float32(logits.flatten(0, 1)), y.flatten().to(device), reduction="sum").item()
    return total / (len(ids) - 1)


def context_length(model: nn.Module) -> int | None:
    """The longest input ``model`` accepts (GPT's ``block_size``, BERT's ``max_positions``).

    ``None`` for a model without a limit: a recurrent network reads any length (its
    class says so with ``context_limit = None``).
    """
    if getattr(type(model), "context_limit", 0) is None:
        return None
    config = getattr(model, "config", None)
    for name in ("block_size", "max_positions"):
        if hasattr(config, name):
            return getattr(config, name)
    raise TypeError(f"cannot tell the context length of a {type(model).__name__} (no config.block_size)")


@dataclass(frozen=True)
class CausalLM:
    """Next-token prediction on windows of ``block_size`` tokens.

    Introduced in: the Pretraining chapter.
    """

    block_size: int
    name: str = "causal LM"

    def batch(self, tokens: np.ndarray | Tensor, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return causal_lm_batch(tokens, self.block_size, batch_size, generator)

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        return next_token_loss(model(inputs).logits, targets)  # (B, T, V) logits


@dataclass(frozen=True)
class MaskedLM:
    """BERT's masked-token recovery on windows of ``block_size`` tokens.

    Introduced in: the Pretraining chapter.
    """

    block_size: int
    mask_id: int
    vocab_size: int
    protected: Sequence[int] = ()  # ids never chosen (document separators)
    name: str = "masked LM"

    def batch(self, tokens: np.ndarray | Tensor, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return mlm_batch(tokens, self.block_size, batch_size, self.mask_id, self.vocab_size, generator, self.protected)

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        hidden = model(inputs).last_hidden_state  # (B, T, d_model)
        chosen = targets != IGNORE_INDEX  # (B, T): score only the chosen positions
        logits = mlm_head(model)(hidden[chosen])  # (N_chosen, V)
        return F.cross_entropy(at_least_float32(logits), targets[chosen])


def similar_length_rows(lengths: Tensor, batch_size: int, pool: int, generator: torch.Generator) -> Tensor:
    """(B,) rows drawn uniformly with replacement; with ``pool > 1``, of similar ``lengths``.

    ``pool * batch_size`` rows are drawn, sorted by length and cut into ``pool``
    runs; one run, chosen uniformly, is returned, so each row keeps the same chance.

    Introduced in: chapter 8, Fine-tuning.
    """
    rows = torch.randint(len(lengths), (batch_size * pool,), generator=generator)
    if pool == 1:
        return rows
    rows = rows[torch.argsort(lengths[rows], stable=True)]
    run = int(torch.randint(pool, (1,), generator=generator))
    return rows[run * batch_size : (run + 1) * batch_size]


@dataclass(frozen=True)
class Classification:
    """One label per sentence, from :class:`~llmcourse.finetune.LabelledSentences` data.

    A batch is ``batch_size`` rows drawn at random (with replacement, like the
    language-model windows), cut to the longest sentence among them: ``inputs``
    are (B, T') ids, ``targets`` (B,) labels. The attention mask is rebuilt from
    ``inputs != pad_id``. ``block_size`` is the data's padded width.

    With ``pool > 1``, ``pool`` batches' worth of rows are drawn, sorted by length
    and cut into ``pool`` runs of ``batch_size``, and one run is the batch: every
    sentence stays equally likely, but a batch holds sentences of similar length,
    so far less padding is computed.

    Introduced in: chapter 8, Fine-tuning.
    """

    block_size: int
    n_classes: int = 2
    pad_id: int = 0
    pool: int = 1
    name: str = "classification"

    def __post_init__(self):
        if not isinstance(self.pool, int) or self.pool < 1:
            raise ValueError(f"pool must be an integer >= 1, got {self.pool!r}")

    def batch(self, data, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = similar_length_rows((data.ids != self.pad_id).sum(1), batch_size, self.pool, generator)  # (B,)
        ids = data.ids[rows]  # (B, T)
        longest = int((ids != self.pad_id).sum(1).max())
        return ids[:, : max(longest, 1)], data.labels[rows]  # (B, T'), (B,)

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        if int(targets.min()) < 0 or int(targets.max()) >= self.n_classes:
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1}, got {targets.tolist()}")
        logits = model(inputs, (inputs != self.pad_id).long())  # (B, n_classes)
        return F.cross_entropy(at_least_float32(logits), targets)


def mlm_head(model: nn.Module):
    """``model.mlm_logits``, looked up through a DistributedDataParallel or compiled wrapper."""
    inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model
    return inner.mlm_logits
