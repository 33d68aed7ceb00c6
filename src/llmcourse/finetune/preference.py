"""Preference tuning of a GPT with DPO, through the course's ``Trainer``.

The pieces around :mod:`llmcourse.finetune.dpo`'s loss:

- :func:`openings`: the first ``n`` tokens of each text, one (N, n) tensor (all
  prompts the same length, so a batch needs no padding);
- :func:`sample_continuations`: ``n_new`` tokens drawn from the model's full
  distribution (temperature 1, no filter) after each prompt;
- :func:`continuation_logprob`: log pi(y | x), summed over the continuation's tokens;
- :class:`PreferencePairs` and the :class:`DPO` objective: (prompt, chosen,
  rejected) triples, and the DPO loss against a frozen reference model;
- :func:`kl_estimate`: KL(policy || reference) on sequences, estimated from the
  policy's own samples.

Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from llmcourse.finetune.dpo import preference_loss, sequence_logprob
from llmcourse.generation import generate
from llmcourse.training.batches import IGNORE_INDEX


def openings(tokenizer, texts: Sequence[str], n_tokens: int) -> Tensor:
    """(N, n_tokens) the first ``n_tokens`` tokens of every text that has that many (shorter ones skipped).

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    rows = [ids[:n_tokens] for ids in (tokenizer.encode(t[: 40 * n_tokens]) for t in texts) if len(ids) >= n_tokens]
    if not rows:
        raise ValueError(f"no text has {n_tokens} tokens")
    return torch.tensor(rows, dtype=torch.long)


def sample_continuations(model: nn.Module, prompts: Tensor, n_new: int, seed: int = 0,
                         batch_size: int = 256) -> Tensor:
    """(N, n_new) tokens sampled after each of the (N, P) ``prompts``, from the model's unaltered distribution.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    generator = torch.Generator().manual_seed(seed)
    out = [generate(model, prompts[i:i + batch_size], n_new, temperature=1.0, generator=generator)[:, prompts.size(1):]
           for i in range(0, len(prompts), batch_size)]
    return torch.cat(out)  # (N, n_new)


def pair_batch(prompts: Tensor, continuations: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs and targets, (N, P + L - 1) each, that score only the continuation's L tokens."""
    seq = torch.cat([prompts, continuations], dim=1)  # (N, P + L)
    targets = seq[:, 1:].clone()  # (N, P + L - 1)
    targets[:, : prompts.size(1) - 1] = IGNORE_INDEX  # the prompt's own tokens are given, not scored
    return seq[:, :-1], targets


@torch.no_grad()
def continuation_logprob(model: nn.Module, prompts: Tensor, continuations: Tensor, batch_size: int = 128) -> Tensor:
    """(N,) log p(continuation | prompt) under ``model``, summed over the continuation's tokens.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    was_training = model.training
    model.eval()
    inputs, targets = pair_batch(prompts, continuations)
    out = torch.cat([sequence_logprob(model, inputs[i:i + batch_size], targets[i:i + batch_size]).float()
                     for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return out


class PreferencePairs:
    """(prompt, chosen continuation, rejected continuation) triples, as (N, P), (N, L), (N, L) tensors.

    ``len()`` is the number of tokens held (the ``Trainer`` compares it with a batch).

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """

    holds_token_ids = False  # read by the Trainer's checks

    def __init__(self, prompts: Tensor, chosen: Tensor, rejected: Tensor):
        if not (len(prompts) == len(chosen) == len(rejected)) or chosen.shape != rejected.shape:
            raise ValueError(f"prompts, chosen and rejected must have matching rows and lengths, got "
                             f"{tuple(prompts.shape)}, {tuple(chosen.shape)}, {tuple(rejected.shape)}")
        self.prompts, self.chosen, self.rejected = prompts, chosen, rejected

    def __len__(self) -> int:
        return 2 * self.chosen.numel() + self.prompts.numel()

    @property
    def width(self) -> int:
        """Tokens of one prompt and continuation."""
        return self.prompts.size(1) + self.chosen.size(1)


@dataclass(frozen=True, eq=False)
class DPO:
    """The DPO loss of the model being trained against a frozen ``reference``, as a ``Trainer`` objective.

    A batch draws ``batch_size`` triples uniformly with replacement; ``inputs`` and
    ``targets`` are (B, 2, T): row 0 the chosen sequence, row 1 the rejected one,
    targets -100 on the prompt.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """

    block_size: int
    reference: nn.Module = field(repr=False)
    beta: float = 0.1
    name: str = "DPO"

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta!r}")
        self.reference.eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)

    def batch(self, data: PreferencePairs, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = torch.randint(len(data.prompts), (batch_size,), generator=generator)  # (B,)
        chosen = pair_batch(data.prompts[rows], data.chosen[rows])
        rejected = pair_batch(data.prompts[rows], data.rejected[rows])
        return torch.stack([chosen[0], rejected[0]], 1), torch.stack([chosen[1], rejected[1]], 1)  # (B, 2, T)

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        return preference_loss(model, self.reference, (inputs[:, 0], targets[:, 0]), (inputs[:, 1], targets[:, 1]),
                               self.beta).loss


@torch.no_grad()
def kl_estimate(policy: nn.Module, reference: nn.Module, prompts: Tensor, samples: Tensor) -> tuple[float, float]:
    """KL(policy || reference) over continuations, from ``samples`` drawn from the policy: (mean, standard error).

    KL = E_{y ~ policy}[log policy(y | x) - log reference(y | x)]: the mean of the
    log-ratio over the policy's own samples is an unbiased estimate, and its
    standard error comes from the spread of the log-ratios (one per prompt).

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    ratio = (continuation_logprob(policy, prompts, samples) - continuation_logprob(reference, prompts, samples)).numpy()
    return float(ratio.mean()), float(ratio.std(ddof=1) / np.sqrt(len(ratio)))


__all__ = ["DPO", "PreferencePairs", "continuation_logprob", "kl_estimate", "openings", "pair_batch",
           "sample_continuations"]
