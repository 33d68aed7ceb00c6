"""LoRA (Hu et al. 2021): train a low-rank change to a frozen weight matrix.

A linear layer ``y = W x + b`` with W of shape (out, in) gets a parallel path

    y = W x + b + (alpha / r) * B (A dropout(x)),   A: (r, in), B: (out, r)

W and b stay frozen; only A and B train: r * (in + out) numbers instead of
out * in. B starts at zero, so the wrapped model starts exactly equal to the
base model. After training, :meth:`LoRALinear.merge` folds the change into W
(``W += (alpha / r) B A``) and the layer costs nothing extra at inference;
:meth:`LoRALinear.unmerge` takes it out again.

:func:`add_lora` wraps named linear layers of a model (for example the query
and value projections of every attention block) or every linear layer.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ALL_LINEAR = "all-linear"
OUTPUT_LAYERS = ("lm_head", "pooler", "head")  # left alone by "all-linear": outputs, not the encoder's layers


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update scaled by ``alpha / r``.

    Introduced in: chapter 8, Fine-tuning.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError(f"r must be a positive integer, got {r!r}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.base = base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> Tensor:
        """(out, in): the change LoRA makes to W, (alpha / r) B A."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in) -> (..., out)."""
        y = self.base(x)
        if self.merged:  # the update is inside base.weight already
            return y
        return y + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)  # (..., r) -> (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: one matrix multiply per call afterwards."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of the base weight again (before training A and B further)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha}, merged={self.merged}"


def _matches(name: str, target: str) -> bool:
    """``blocks.0.attention.query`` matches ``query``, ``attention.query`` and itself."""
    return name == target or name.endswith("." + target)


def add_lora(
    model: nn.Module,
    r: int,
    alpha: float,
    target_modules: Sequence[str] | str = ("query", "value"),
    dropout: float = 0.0,
) -> list[str]:
    """Replace linear layers of ``model`` by :class:`LoRALinear` wrappers; return their names.

    ``target_modules`` lists names matched against the end of each module's dotted
    name (``"query"`` matches ``blocks.3.attention.query``), or is ``"all-linear"``:
    every ``nn.Linear`` except output layers (``lm_head``, ``pooler``, ``head``).
    Every target must match at least one linear layer. Only the wrapped layers'
    base weights are frozen here; freeze the rest of the model with
    :func:`~llmcourse.finetune.freeze` first if it should not train.

    Introduced in: chapter 8, Fine-tuning.
    """
    linears = {
        name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name.endswith(".base")
    }
    if target_modules == ALL_LINEAR:
        chosen = [n for n in linears if not any(_matches(n, out) for out in OUTPUT_LAYERS)]
        if not chosen:
            raise ValueError("target_modules='all-linear' matches no linear layer in this model")
    else:
        if isinstance(target_modules, str):
            target_modules = [target_modules]
        if not target_modules:
            raise ValueError("target_modules is empty: name at least one module, or pass 'all-linear'")
        for target in target_modules:
            if not any(_matches(n, target) for n in linears):
                raise ValueError(
                    f"target_modules entry {target!r} matches no linear layer; linear layers end in "
                    f"{sorted({n.rsplit('.', 1)[-1] for n in linears})}"
                )
        chosen = [n for n in linears if any(_matches(n, t) for t in target_modules)]
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(linears[name], r, alpha, dropout))
    return chosen


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """Every :class:`LoRALinear` inside ``model``.

    Introduced in: chapter 8, Fine-tuning.
    """
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` into its base weight; returns ``model``.

    Introduced in: chapter 8, Fine-tuning.
    """
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora`; returns ``model``.

    Introduced in: chapter 8, Fine-tuning.
    """
    for layer in lora_layers(model):
        layer.unmerge()
    return model
