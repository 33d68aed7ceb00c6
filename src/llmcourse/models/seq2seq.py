"""An encoder-decoder transformer, as in "Attention Is All You Need" (translation).

The encoder reads the source with bidirectional self-attention. The decoder writes
the target one token at a time with causal self-attention, and in each block
cross-attends to the encoder's output: its queries come from the target, its keys
and values from the source. The cross-attention map shows which source token the
decoder looked at to write each target token.

Introduced in: the Transformer chapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.models.config import ModelConfig
from llmcourse.nn.attention import KVCache, padding_mask
from llmcourse.nn.blocks import TransformerBlock, init_weights
from llmcourse.nn.positional import SinusoidalPositions


@dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    vocab_size: int = 32  # one vocabulary shared by source and target
    max_positions: int = 64
    n_encoder_layer: int = 2
    n_decoder_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int | None = None  # None = 4 * d_model
    dropout: float = 0.0
    norm_first: bool = True
    fused: bool = True

    @classmethod
    def tiny(cls, vocab_size: int = 32, **overrides) -> Seq2SeqConfig:
        """2 + 2 layers, 4 heads, width 64: learns a toy task (copy, reverse, sort) in seconds."""
        return cls(**{"vocab_size": vocab_size} | overrides)


class Seq2SeqOutput(NamedTuple):
    logits: Tensor  # (B, T_tgt, vocab_size)
    loss: Tensor | None
    encoder_attentions: tuple[Tensor, ...] | None  # (B, h, T_src, T_src) per encoder layer
    decoder_attentions: tuple[Tensor, ...] | None  # (B, h, T_tgt, T_tgt) per decoder layer
    cross_attentions: tuple[Tensor, ...] | None  # (B, h, T_tgt, T_src) per decoder layer


class Seq2Seq(nn.Module):
    """Encoder-decoder transformer with shared, tied embeddings and sinusoidal positions."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = SinusoidalPositions(c.max_positions, c.d_model)
        self.dropout = nn.Dropout(c.dropout)

        def block(cross: bool) -> TransformerBlock:
            return TransformerBlock(
                c.d_model, c.n_head, c.ff_width, c.dropout,
                norm_first=c.norm_first, cross_attention=cross, activation="relu", fused=c.fused,
            )

        self.encoder = nn.ModuleList(block(False) for _ in range(c.n_encoder_layer))
        self.decoder = nn.ModuleList(block(True) for _ in range(c.n_decoder_layer))
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.apply(init_weights)

    def embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        """(B, T) -> (B, T, d_model): scaled token embedding + sinusoidal position."""
        x = self.embedding(ids) * math.sqrt(self.config.d_model)
        return self.dropout(x + self.positions(ids.size(1), offset))

    def encode(self, src: Tensor, src_mask: Tensor | None = None, need_weights: bool = False):
        """src: (B, T_src) -> (memory (B, T_src, d_model), encoder attentions)."""
        mask = padding_mask(src_mask) if src_mask is not None else None
        x, attentions = self.embed(src), []
        for block in self.encoder:
            out = block(x, mask, need_weights=need_weights)
            x = out.hidden
            attentions.append(out.self_attention)
        return self.encoder_norm(x), tuple(attentions)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ):
        """tgt: (B, T_tgt) -> (logits (B, T_tgt, vocab), self-attentions, cross-attentions)."""
        context_mask = padding_mask(src_mask) if src_mask is not None else None
        offset = cache.length if cache is not None else 0
        x, self_attn, cross_attn = self.embed(tgt, offset), [], []
        for i, block in enumerate(self.decoder):
            out = block(
                x, is_causal=True, context=memory, context_mask=context_mask,
                cache=cache, layer=i, need_weights=need_weights,
            )
            x = out.hidden
            self_attn.append(out.self_attention)
            cross_attn.append(out.cross_attention)
        logits = self.decoder_norm(x) @ self.embedding.weight.T  # tied output: (B, T_tgt, vocab)
        return logits, tuple(self_attn), tuple(cross_attn)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        targets: Tensor | None = None,
        *,
        src_mask: Tensor | None = None,
        output_attentions: bool = False,
    ) -> Seq2SeqOutput:
        """Teacher forcing: ``tgt`` is the target shifted right (starts with BOS); ``targets`` the target itself."""
        memory, enc_attn = self.encode(src, src_mask, output_attentions)
        logits, dec_attn, cross_attn = self.decode(tgt, memory, src_mask, need_weights=output_attentions)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        if not output_attentions:
            return Seq2SeqOutput(logits, loss, None, None, None)
        return Seq2SeqOutput(logits, loss, enc_attn, dec_attn, cross_attn)

    @torch.no_grad()
    def generate(
        self, src: Tensor, max_new_tokens: int, bos_id: int, eos_id: int | None = None, src_mask: Tensor | None = None
    ) -> Tensor:
        """Greedy decoding with a key/value cache: (B, T_src) -> (B, 1 + n) starting with BOS.

        Stops early once every sequence has produced ``eos_id``; positions after a
        sequence's EOS are filled with ``eos_id``.
        """
        memory, _ = self.encode(src, src_mask)
        out = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
        cache, done = KVCache(), torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            logits, _, _ = self.decode(out[:, -1:], memory, src_mask, cache=cache)  # only the newest token
            next_id = logits[:, -1].argmax(-1)  # (B,)
            if eos_id is not None:
                next_id = next_id.masked_fill(done, eos_id)
                done |= next_id == eos_id
            out = torch.cat([out, next_id[:, None]], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return out
