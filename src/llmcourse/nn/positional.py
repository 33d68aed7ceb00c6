"""Positional information: sinusoidal, learned and rotary (RoPE).

Attention by itself ignores order: permute the tokens and every output permutes
with them. Three ways to tell the model where each token sits:

- **sinusoidal** (the original transformer): a fixed vector per position, added to
  the token embedding. Dimension pair i turns at frequency 1 / base^(2i/d), like the
  digits of a counter that tick at different speeds.
- **learned** (BERT, GPT-2): one trained vector per position, up to a maximum length.
- **rotary** (RoPE, Llama): nothing is added; queries and keys are rotated by an
  angle proportional to their position, so q.k depends only on the distance.

Introduced in: the Embeddings and positional encoding chapter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llmcourse.device import at_least_float32


def _check_even(d: int, what: str) -> None:
    if d <= 0 or d % 2:
        raise ValueError(f"{what} must be a positive even number, got {d}")


def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10_000.0) -> Tensor:
    """(n_positions, d_model): PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d))."""
    _check_even(d_model, "d_model")
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (T, 1)
    freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (d/2,)
    angle = position * freq  # (T, d/2)
    pe = torch.empty(n_positions, d_model)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal vectors for positions ``offset .. offset+T-1``: no parameters."""

    def __init__(self, max_positions: int, d_model: int, base: float = 10_000.0):
        super().__init__()
        self.register_buffer("table", sinusoidal_encoding(max_positions, d_model, base), persistent=False)

    def forward(self, T: int, offset: int = 0) -> Tensor:
        _check_length(offset + T, self.table.size(0))
        return self.table[offset : offset + T]  # (T, d_model)


class LearnedPositions(nn.Module):
    """One trained vector per position, as in BERT and GPT-2."""

    def __init__(self, max_positions: int, d_model: int):
        super().__init__()
        self.embedding = nn.Embedding(max_positions, d_model)

    def forward(self, T: int, offset: int = 0) -> Tensor:
        _check_length(offset + T, self.embedding.num_embeddings)
        positions = torch.arange(offset, offset + T, device=self.embedding.weight.device)
        return self.embedding(positions)  # (T, d_model)


def _check_length(needed: int, available: int) -> None:
    if needed > available:
        raise ValueError(f"sequence reaches position {needed - 1}, but the model knows only {available} positions")


def rope_angles(n_positions: int, head_dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles, each (n_positions, head_dim / 2): angle[p, i] = p / base^(2i/hs)."""
    _check_even(head_dim, "head_dim")
    freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hs/2,)
    angle = torch.arange(n_positions, dtype=torch.float32)[:, None] * freq  # (T, hs/2)
    return angle.cos(), angle.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each consecutive pair (x[2i], x[2i+1]) of the last dimension by its angle.

    x: (..., T, hs); cos, sin: (T, hs/2). A 2-D rotation per pair, so norms are kept
    and <R(p) q, R(s) k> depends on p - s only.
    """
    x1, x2 = at_least_float32(x[..., 0::2]), at_least_float32(x[..., 1::2])  # (..., T, hs/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (..., T, hs/2, 2)
    return out.flatten(-2).to(x.dtype)  # (..., T, hs), pairs interleaved back


class RotaryEmbedding(nn.Module):
    """RoPE for queries or keys of shape (B, h, T, head_dim) starting at position ``offset``."""

    def __init__(self, max_positions: int, head_dim: int, base: float = 10_000.0):
        super().__init__()
        cos, sin = rope_angles(max_positions, head_dim, base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.size(-2)
        _check_length(offset + T, self.cos.size(0))
        return apply_rope(x, self.cos[offset : offset + T], self.sin[offset : offset + T])
