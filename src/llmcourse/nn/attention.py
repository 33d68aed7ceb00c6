"""Scaled dot-product attention, its masks, and multi-head attention with a key/value cache.

Two paths compute the same thing:

- :func:`scaled_dot_product_attention` writes out softmax(Q K^T / sqrt(d)) V and
  returns the attention weights too: the one to read, and to draw.
- :func:`fused_attention` calls :func:`torch.nn.functional.scaled_dot_product_attention`,
  which never stores the (T x T) weights (flash or memory-efficient kernels on a GPU).

Masks are boolean and say where attention is **allowed** (True = may attend), the
convention of :func:`torch.nn.functional.scaled_dot_product_attention`. They broadcast
against the scores, shape (B, heads, T_query, T_key).

Introduced in: the Attention chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.device import at_least_float32

# ----------------------------------------------------------------------------- masks


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """(q_len, k_len) bool: query i may attend to key j iff j <= i + (k_len - q_len).

    With ``k_len == q_len`` this is the lower triangle: each token sees itself and the
    past. With a key/value cache the queries are the last ``q_len`` of ``k_len``
    positions, so the triangle shifts right by the length of the cached past.
    """
    k_len = q_len if k_len is None else k_len
    if q_len > k_len:
        raise ValueError(f"causal_mask: {q_len} queries cannot be the last positions of {k_len} keys")
    ones = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=k_len - q_len)  # (q_len, k_len)


def padding_mask(attention_mask: Tensor) -> Tensor:
    """(B, T) with 1 for real tokens and 0 for padding  ->  (B, 1, 1, T) bool over keys.

    Every query may attend to every real token and to no padding token.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"padding_mask expects (batch, time), got shape {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Attention allowed where **every** given mask allows it (None masks are skipped)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    combined = present[0]
    for mask in present[1:]:
        combined = combined & mask  # broadcasts, e.g. (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
    return combined


# ----------------------------------------------------------------------------- attention


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d)) v, written out; returns (output, attention weights).

    q: (..., T_q, d), k: (..., T_k, d), v: (..., T_k, d_v); mask: bool, broadcastable to
    (..., T_q, T_k), True where attention is allowed. Output (..., T_q, d_v); weights
    (..., T_q, T_k), each row summing to 1. A query whose keys are all masked gets
    all-zero weights (and a zero output) instead of NaN.
    """
    d = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(at_least_float32(scores), dim=-1).to(q.dtype)  # softmax over the keys
    if mask is not None:
        weights = weights.nan_to_num(0.0)  # rows with no allowed key: 0/0 -> 0
    if dropout_p > 0.0 and training:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
    is_causal: bool = False,
) -> Tensor:
    """The same output as :func:`scaled_dot_product_attention`, from PyTorch's fused kernel.

    The weights are never materialised, so memory grows linearly with the sequence
    on GPUs with flash attention. ``is_causal=True`` (square scores, no ``mask``)
    stands for :func:`causal_mask` and lets the kernel skip the masked half.
    """
    p = dropout_p if training else 0.0
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)


# ----------------------------------------------------------------------------- cache


@dataclass
class KVCache:
    """Keys and values of the tokens generated so far, one (k, v) pair per layer.

    Decoding one token at a time then costs one new query, key and value per
    layer instead of recomputing the whole prefix. Shapes: (B, heads, T_past, head_dim).
    """

    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Number of positions cached (0 when empty), as seen by the first layer."""
        return self.layer_length(0)

    def layer_length(self, layer: int) -> int:
        """Number of positions cached for ``layer``: the position of its next token."""
        past = self.keys[layer] if layer < len(self.keys) else None
        return 0 if past is None else past.size(-2)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's (B, h, T_new, hs) keys and values to ``layer``; return all of them."""
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        past_k, past_v = self.keys[layer], self.values[layer]
        if past_k is not None:
            k = torch.cat([past_k, k], dim=-2)  # (B, h, T_past + T_new, hs)
            v = torch.cat([past_v, v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


# ----------------------------------------------------------------------------- multi-head


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h heads of size d_model / h, each attending in its own subspace.

    Self-attention when ``context`` is None; cross-attention (queries from ``x``, keys
    and values from ``context``, as in an encoder-decoder) otherwise. ``fused=True``
    uses PyTorch's fused kernel unless the weights are asked for.

    Introduced in: the Attention chapter.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True, fused: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.dropout, self.fused = dropout, fused
        self.query = nn.Linear(d_model, d_model, bias=bias)
        self.key = nn.Linear(d_model, d_model, bias=bias)
        self.value = nn.Linear(d_model, d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, h, T, head_dim)."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        """(B, h, T, head_dim) -> (B, T, h * head_dim), head 0's features first."""
        B, h, T, hs = x.shape
        return x.transpose(1, 2).reshape(B, T, h * hs)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        is_causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
        rope=None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, T, d_model) -> (output (B, T, d_model), weights (B, h, T, T_k) or None).

        ``is_causal`` adds :func:`causal_mask` to ``mask`` (a decoder's self-attention). ``cache`` (self-attention only) appends this call's keys and values to layer
        ``layer`` of a :class:`KVCache`; ``rope`` (a :class:`~llmcourse.nn.positional.RotaryEmbedding`)
        rotates queries and keys by their absolute positions.
        """
        source = x if context is None else context
        q = self.split_heads(self.query(x))  # (B, h, T, hs)
        k = self.split_heads(self.key(source))  # (B, h, T_k, hs)
        v = self.split_heads(self.value(source))  # (B, h, T_k, hs)
        if rope is not None:
            offset = cache.layer_length(layer) if cache is not None else 0
            q, k = rope(q, offset), rope(k, offset)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, h, T_past + T, hs)
        fast = self.fused and not need_weights
        if is_causal and fast and mask is None and q.size(-2) == k.size(-2):
            y = fused_attention(q, k, v, None, self.dropout, self.training, is_causal=True)
            return self.out(self.merge_heads(y)), None
        if is_causal:
            mask = combine_masks(causal_mask(q.size(-2), k.size(-2), device=q.device), mask)
        if fast:
            y, weights = fused_attention(q, k, v, mask, self.dropout, self.training), None
        else:
            y, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout, self.training)
        return self.out(self.merge_heads(y)), weights  # (B, T, d_model)
