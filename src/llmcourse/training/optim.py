"""The optimizer and the learning-rate schedule of pretraining.

AdamW decays weights towards zero, but only the matrices (linear layers and
embeddings): decaying biases and LayerNorm gains would only pull them away from
their useful values. The learning rate rises linearly during warm-up (Adam's
moment estimates are noisy at first) and then follows a cosine down to a floor.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (2-D or more) with ``weight_decay``, the rest without.

    Tied parameters (GPT's token embedding and output matrix) appear once.

    Introduced in: the Pretraining chapter.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # .parameters() skips tied repeats
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (the fused CUDA kernel when the model is on a GPU).

    Introduced in: the Pretraining chapter.
    """
    on_cuda = any(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=betas, fused=on_cuda or None)


def lr_at(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine decay to ``min_lr``.

    Step 0 gets ``max_lr / warmup_steps``; step ``warmup_steps - 1`` gets ``max_lr``; the
    last step (``total_steps - 1``) gets ``min_lr``.

    Introduced in: the Pretraining chapter.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:
        return max_lr
    progress = min(1.0, (step - warmup_steps + 1) / decay_steps)  # (0, 1]
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
