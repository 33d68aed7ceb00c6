"""Training batches cut from a token stream, for the two pretraining objectives.

Causal LM (GPT): a random window of ``block_size + 1`` tokens gives the input
``[a, b, c, d]`` and the targets ``[b, c, d, e]``; position t learns to predict
token t + 1 from tokens 0..t.

Masked LM (BERT): 15% of the positions of a window are chosen; of those, 80%
become ``<|mask|>``, 10% a random token and 10% stay as they are. The loss is
taken on the chosen positions only (every other target is -100, which
cross-entropy ignores).

Every random choice comes from a ``torch.Generator``, so a batch sequence is
reproducible and can be resumed from a checkpoint.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

IGNORE_INDEX = -100  # targets with this value add nothing to the cross-entropy


def window_starts(n_tokens: int, window: int, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
    """``batch_size`` random starts of windows of ``window`` tokens inside a stream of ``n_tokens``.

    Every start from 0 to ``n_tokens - window`` is equally likely.
    """
    if n_tokens < window:
        raise ValueError(f"the token stream has {n_tokens:,} tokens, fewer than one window of {window:,}")
    return torch.randint(n_tokens - window + 1, (batch_size,), generator=generator)  # (B,)


def windows(tokens: np.ndarray | Tensor, starts: Tensor, length: int) -> Tensor:
    """Rows ``tokens[s : s + length]`` for each start: (B, length) int64."""
    if isinstance(tokens, Tensor):
        return torch.stack([tokens[s : s + length] for s in starts.tolist()]).long()
    rows = np.stack([np.asarray(tokens[s : s + length]) for s in starts.tolist()])  # reads only these slices
    return torch.from_numpy(rows.astype(np.int64))


def causal_lm_batch(
    tokens: np.ndarray | Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Inputs and next-token targets, both (B, block_size): ``y[:, t] == x[:, t + 1]`` inside a window.

    Introduced in: the Pretraining chapter.
    """
    starts = window_starts(len(tokens), block_size + 1, batch_size, generator)
    chunk = windows(tokens, starts, block_size + 1)  # (B, T + 1)
    return chunk[:, :-1], chunk[:, 1:]  # (B, T) inputs, (B, T) targets shifted by one


def mask_tokens(
    ids: Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
    protected: Sequence[int] = (),
) -> tuple[Tensor, Tensor]:
    """BERT's corruption: ``(inputs, targets)`` for the masked-LM loss.

    Each position not in ``protected`` is chosen with probability ``mask_prob``
    (at least one per row). A chosen token becomes ``mask_id`` with probability
    0.8, a uniformly random token with 0.1, and stays itself with 0.1. Targets are
    the original ids at chosen positions and -100 elsewhere.

    Introduced in: the Pretraining chapter.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob!r}")
    allowed = ~torch.isin(ids, torch.tensor(list(protected), dtype=ids.dtype))  # (B, T)
    draw = torch.rand(ids.shape, generator=generator)  # (B, T)
    chosen = (draw < mask_prob) & allowed
    # a row with nothing chosen would add nothing to the loss: choose its lowest draw
    empty = ~chosen.any(dim=1) & allowed.any(dim=1)  # (B,)
    lowest = draw.masked_fill(~allowed, 2.0).argmin(dim=1)  # (B,)
    chosen[empty, lowest[empty]] = True
    targets = ids.masked_fill(~chosen, IGNORE_INDEX)
    action = torch.rand(ids.shape, generator=generator)  # 80% / 10% / 10% split of the chosen
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, targets


def mlm_batch(
    tokens: np.ndarray | Tensor,
    block_size: int,
    batch_size: int,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    protected: Sequence[int] = (),
) -> tuple[Tensor, Tensor]:
    """Corrupted windows and their masked-LM targets, both (B, block_size).

    Introduced in: the Pretraining chapter.
    """
    starts = window_starts(len(tokens), block_size, batch_size, generator)
    ids = windows(tokens, starts, block_size)  # (B, T)
    return mask_tokens(ids, mask_id, vocab_size, generator, protected=protected)
