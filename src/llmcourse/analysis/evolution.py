"""The copy task behind the Introduction chapter's step from recurrence to attention.

:func:`copy_batch`, :func:`train_seq2seq` and :func:`copy_accuracy`: the copy
task (read ``L`` symbols, write them out again, or backwards with
``reverse=True``) that exposes the single-vector bottleneck of an
encoder-decoder without attention. The chapter and the checks over several
seeds run exactly this code. (The chapter's language models need no harness of
their own: the course's :class:`~llmcourse.training.Trainer` trains a GPT and an
:class:`~llmcourse.models.RNNLM` alike.)

Introduced in: the Introduction chapter (chapter 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from llmcourse.training.optim import lr_at

BOS = 1  # starts every decoder input of the copy task
FIRST_SYMBOL = 2  # symbol k of the copy task has id FIRST_SYMBOL + k (ids 0 and 1 are special)


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _set_lr(optimizer: torch.optim.Optimizer, step: int, lr: float, steps: int) -> None:
    """Warm-up over the first tenth of the steps, then cosine down to lr / 10 (the course's schedule)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, lr, max(1, steps // 10), steps, lr / 10)


def copy_batch(
    length: int, batch_size: int, generator: torch.Generator, n_symbols: int = 10, reverse: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Random sequences of ``length`` symbols and their copies (or reversals), ready for teacher forcing.

    Returns ``src`` (B, L), ``tgt_in`` = BOS then the target without its last symbol
    (B, L), and ``targets`` = the copy, or with ``reverse`` the reversal (B, L).
    Ids: 1 is BOS, symbol k is 2 + k.

    Introduced in: the Introduction chapter (chapter 1).
    """
    for name, value in (("length", length), ("batch_size", batch_size), ("n_symbols", n_symbols)):
        _check_positive(name, value)
    src = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + n_symbols, (batch_size, length), generator=generator)  # (B, L)
    targets = src.flip(1) if reverse else src  # (B, L)
    tgt_in = torch.cat([torch.full((batch_size, 1), BOS), targets[:, :-1]], dim=1)  # (B, L)
    return src, tgt_in, targets


def train_seq2seq(
    model: nn.Module,
    steps: int,
    lengths: Sequence[int],
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    n_symbols: int = 10,
    reverse: bool = False,
) -> list[float]:
    """Train an encoder-decoder (``model(src, tgt_in, targets).loss``) on the copy task.

    Each step draws one length from ``lengths`` and a batch of that length, so one
    model learns every length. Returns the loss of every step.

    Introduced in: the Introduction chapter (chapter 1).
    """
    _check_positive("steps", steps)
    if not lengths or any(not isinstance(n, int) or n < 1 for n in lengths):
        raise ValueError(f"lengths must be positive integers, got {lengths!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        _set_lr(optimizer, step, lr, steps)
        length = lengths[int(torch.randint(len(lengths), (1,), generator=generator))]
        loss = model(*copy_batch(length, batch_size, generator, n_symbols, reverse)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def copy_accuracy(
    model: nn.Module, length: int, n: int = 500, seed: int = 10_000, n_symbols: int = 10, reverse: bool = False
) -> float:
    """Share of output symbols right when ``model.generate`` (greedy) copies (or reverses) ``n`` fresh sequences.

    The held-out sequences come from their own generator (seeded with ``seed``),
    never from the training one.

    Introduced in: the Introduction chapter (chapter 1).
    """
    src, _, targets = copy_batch(length, n, torch.Generator().manual_seed(seed), n_symbols, reverse)
    out = model.eval().generate(src, length, bos_id=BOS)[:, 1:]  # (n, L) without BOS
    return (out == targets).float().mean().item()
