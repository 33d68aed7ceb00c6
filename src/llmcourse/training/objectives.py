"""The two pretraining objectives as small objects the trainer calls.

An objective makes a batch from the token stream and computes the loss of a
model on it:

- :class:`CausalLM` (GPT): predict every next token; the loss covers every position.
- :class:`MaskedLM` (BERT): recover the 15% of chosen tokens; the loss covers those only.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.training.batches import IGNORE_INDEX, causal_lm_batch, mlm_batch


def context_length(model: nn.Module) -> int:
    """The longest input ``model`` accepts (GPT's ``block_size``, BERT's ``max_positions``)."""
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
        logits = model(inputs).logits  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


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
        return F.cross_entropy(logits.float(), targets[chosen])


def mlm_head(model: nn.Module):
    """``model.mlm_logits``, looked up through a DistributedDataParallel or compiled wrapper."""
    inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model
    return inner.mlm_logits
