"""The transformer block: attention and a feed-forward network, each wrapped in a
residual connection and a LayerNorm.

Two placements of the LayerNorm:

- **post-norm** (the original transformer, BERT): x = LN(x + sublayer(x));
- **pre-norm** (GPT-2 and most models since): x = x + sublayer(LN(x)), which keeps a
  clean residual path from input to output and trains deep stacks more stably.

A decoder block of an encoder-decoder adds cross-attention between the two.

Introduced in: the Transformer chapter.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from llmcourse.nn.attention import KVCache, MultiHeadAttention

ACTIVATIONS = {
    "gelu": nn.GELU,  # exact, with erf (BERT)
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),  # GPT-2's approximation
    "relu": nn.ReLU,  # the original transformer
}


class FeedForward(nn.Module):
    """Position-wise MLP: d_model -> d_ff -> d_model, applied to every token alone."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))  # (B, T, d_ff) inside, (B, T, d_model) out


class BlockOutput(NamedTuple):
    hidden: Tensor  # (B, T, d_model)
    self_attention: Tensor | None  # (B, h, T, T_k) when asked for
    cross_attention: Tensor | None  # (B, h, T, T_src) when asked for, decoder blocks only


class TransformerBlock(nn.Module):
    """Self-attention (+ cross-attention) + feed-forward, with residuals, LayerNorm and dropout.

    ``norm_first=True`` is pre-norm, ``False`` post-norm. ``cross_attention=True`` makes
    the decoder block of an encoder-decoder.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        *,
        norm_first: bool = True,
        cross_attention: bool = False,
        activation: str = "gelu",
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        fused: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(d_model, n_heads, dropout, bias, fused)
        self.attention_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.cross = MultiHeadAttention(d_model, n_heads, dropout, bias, fused) if cross_attention else None
        self.cross_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if cross_attention else None
        self.ffn = FeedForward(d_model, d_ff, activation, bias)
        self.ffn_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _residual(self, x: Tensor, norm: nn.LayerNorm, sublayer) -> tuple[Tensor, Tensor | None]:
        """x + sublayer(LN(x)) (pre-norm) or LN(x + sublayer(x)) (post-norm); dropout on the sublayer's output."""
        if self.norm_first:
            y, weights = sublayer(norm(x))
            return x + self.dropout(y), weights
        y, weights = sublayer(x)
        return norm(x + self.dropout(y)), weights

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        is_causal: bool = False,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        rope=None,
        need_weights: bool = False,
    ) -> BlockOutput:
        """x: (B, T, d_model); ``context``: the encoder's output (B, T_src, d_model) for cross-attention."""

        def self_attention(h):
            return self.attention(
                h, mask=mask, is_causal=is_causal, cache=cache, layer=layer, rope=rope, need_weights=need_weights
            )

        x, self_weights = self._residual(x, self.attention_norm, self_attention)
        cross_weights = None
        if self.cross is not None:
            if context is None:
                raise ValueError("a decoder block with cross-attention needs the encoder output as `context`")

            def cross_attention(h):
                return self.cross(h, context=context, mask=context_mask, need_weights=need_weights)

            x, cross_weights = self._residual(x, self.cross_norm, cross_attention)
        x, _ = self._residual(x, self.ffn_norm, lambda h: (self.ffn(h), None))
        return BlockOutput(x, self_weights, cross_weights)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2/BERT initialisation: N(0, std) for weights, zeros for biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

