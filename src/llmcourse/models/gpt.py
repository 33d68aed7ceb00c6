"""GPT: a decoder-only transformer that predicts the next token.

Token embedding + positions -> n_layer pre-norm blocks with causal self-attention ->
final LayerNorm -> logits through the token embedding matrix again (tied weights).

Introduced in: the Transformer chapter; trained in the Pretraining chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.device import at_least_float32
from llmcourse.models.config import ModelConfig
from llmcourse.nn.attention import KVCache
from llmcourse.nn.blocks import TransformerBlock, init_weights
from llmcourse.nn.positional import LearnedPositions, RotaryEmbedding, SinusoidalPositions

POSITIONS = ("learned", "sinusoidal", "rope")


@dataclass(frozen=True)
class GPTConfig(ModelConfig):
    vocab_size: int = 50_257  # GPT-2's byte-level BPE vocabulary
    block_size: int = 1_024  # context length: the most tokens the model sees at once
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    d_ff: int | None = None  # feed-forward width; None = 4 * d_model
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms
    positions: str = "learned"  # "learned" (GPT-2), "sinusoidal" or "rope"
    activation: str = "gelu_tanh"  # GPT-2's GELU
    fused: bool = True  # PyTorch's fused attention kernel when weights are not asked for

    def __post_init__(self):
        super().__post_init__()
        if self.positions not in POSITIONS:
            raise ValueError(f"GPTConfig.positions={self.positions!r}; choose one of {POSITIONS}")

    @classmethod
    def tiny(cls, vocab_size: int = 512, **overrides) -> GPTConfig:
        """2 layers, 4 heads, width 64, context 64: trains in seconds on a CPU (tests, exercises)."""
        return cls(**{"vocab_size": vocab_size, "block_size": 64, "n_layer": 2, "n_head": 4, "d_model": 64} | overrides)

    @classmethod
    def gpt2_small(cls, **overrides) -> GPTConfig:
        """GPT-2 small: 12 layers, 12 heads, width 768, context 1,024 (124M parameters)."""
        return cls(**overrides)

    @classmethod
    def gpt3(cls, **overrides) -> GPTConfig:
        """GPT-3 175B (Brown et al. 2020, Table 2.1): 96 layers, 96 heads, width 12,288, context 2,048."""
        values = {"vocab_size": 50_257, "block_size": 2_048, "n_layer": 96, "n_head": 96, "d_model": 12_288}
        return cls(**values | overrides)


class GPTOutput(NamedTuple):
    logits: Tensor  # (B, T, vocab_size)
    loss: Tensor | None  # mean cross-entropy when targets are given
    attentions: tuple[Tensor, ...] | None  # one (B, h, T, T_k) per layer when asked for


class GPT(nn.Module):
    """Decoder-only transformer with tied input and output embeddings."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = _positions(c)
        self.rope = RotaryEmbedding(c.block_size, c.d_model // c.n_head) if c.positions == "rope" else None
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.d_model, c.n_head, c.ff_width, c.dropout,
                norm_first=True, activation=c.activation, bias=c.bias, fused=c.fused,
            )
            for _ in range(c.n_layer)
        )
        self.final_norm = nn.LayerNorm(c.d_model, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied: one matrix reads and writes tokens
        self.apply(init_weights)
        for block in self.blocks:  # GPT-2: shrink the residual projections with depth
            for proj in (block.attention.out, block.ffn.down):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> GPTOutput:
        """idx: (B, T) token ids; targets: (B, T) the next tokens (-100 = ignore)."""
        B, T = idx.shape
        offset = cache.length if cache is not None else 0
        if offset + T > self.config.block_size:
            raise ValueError(f"{offset + T} tokens exceed the context of {self.config.block_size} (block_size)")
        x = self.token_embedding(idx)  # (B, T, d_model)
        if self.positions is not None:
            x = x + self.positions(T, offset)  # (T, d_model) broadcasts over the batch
        x = self.dropout(x)
        attentions = []
        for i, block in enumerate(self.blocks):
            out = block(x, is_causal=True, cache=cache, layer=i, rope=self.rope, need_weights=output_attentions)
            x = out.hidden
            attentions.append(out.self_attention)
        logits = self.lm_head(self.final_norm(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(at_least_float32(logits.flatten(0, 1)), targets.flatten(), ignore_index=-100)
        return GPTOutput(logits, loss, tuple(attentions) if output_attentions else None)

    def num_parameters(self) -> int:
        """Distinct parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())


def _positions(c: GPTConfig) -> nn.Module | None:
    if c.positions == "learned":
        return LearnedPositions(c.block_size, c.d_model)
    if c.positions == "sinusoidal":
        return SinusoidalPositions(c.block_size, c.d_model)
    return None  # rope: applied inside attention

