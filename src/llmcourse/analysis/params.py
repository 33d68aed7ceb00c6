"""Counting parameters by formula, before building anything.

A transformer's size follows from a few numbers: vocabulary V, width d, feed-forward
width d_ff (usually 4d), layers L, context length. Per layer, attention holds four
d x d matrices (queries, keys, values, output) and the feed-forward network two
d x d_ff ones; biases and LayerNorms add a little. The count below is exact: it equals
``sum(p.numel() for p in model.parameters())`` for the course's models.

Introduced in: the Transformer chapter ("Counting parameters").
"""

from __future__ import annotations

from llmcourse.models.bert import BertConfig
from llmcourse.models.gpt import GPTConfig
from llmcourse.models.seq2seq import Seq2SeqConfig


def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _attention(d: int, bias: bool = True) -> int:
    return 4 * _linear(d, d, bias)  # W_q, W_k, W_v, W_o


def _feed_forward(d: int, d_ff: int, bias: bool = True) -> int:
    return _linear(d, d_ff, bias) + _linear(d_ff, d, bias)


def _layer_norm(d: int, bias: bool = True) -> int:
    return d + (d if bias else 0)  # gain and shift


def _gpt(c: GPTConfig) -> dict[str, int]:
    L, d, b = c.n_layer, c.d_model, c.bias
    return {
        "token embedding": c.vocab_size * d,
        "position embedding": c.block_size * d if c.positions == "learned" else 0,
        "attention": L * _attention(d, b),
        "feed-forward": L * _feed_forward(d, c.ff_width, b),
        "layer norms": (2 * L + 1) * _layer_norm(d, b),
        "output head": 0,  # tied to the token embedding
    }


def _bert(c: BertConfig) -> dict[str, int]:
    L, d = c.n_layer, c.d_model
    return {
        "token embedding": c.vocab_size * d,
        "position embedding": c.max_positions * d,
        "segment embedding": c.type_vocab_size * d,
        "attention": L * _attention(d),
        "feed-forward": L * _feed_forward(d, c.ff_width),
        "layer norms": (2 * L + 1) * _layer_norm(d),
        "pooler": _linear(d, d),
        # transform (d x d), its LayerNorm, and an output bias; the output matrix is tied
        "masked-LM head": _linear(d, d) + _layer_norm(d) + c.vocab_size if c.mlm_head else 0,
    }


def _seq2seq(c: Seq2SeqConfig) -> dict[str, int]:
    d, enc, dec = c.d_model, c.n_encoder_layer, c.n_decoder_layer
    final_norms = 2 if c.norm_first else 0
    return {
        "token embedding": c.vocab_size * d,  # shared by source, target and output
        "self-attention": (enc + dec) * _attention(d),
        "cross-attention": dec * _attention(d),
        "feed-forward": (enc + dec) * _feed_forward(d, c.ff_width),
        "layer norms": (2 * enc + 3 * dec + final_norms) * _layer_norm(d),
    }


_FORMULAS = {GPTConfig: _gpt, BertConfig: _bert, Seq2SeqConfig: _seq2seq}


def parameter_breakdown(config: GPTConfig | BertConfig | Seq2SeqConfig) -> dict[str, int]:
    """Parameters per component (embeddings, attention, feed-forward, ...), by formula."""
    formula = _FORMULAS.get(type(config))
    if formula is None:
        raise TypeError(f"no parameter formula for {type(config).__name__}; expected one of "
                        f"{', '.join(t.__name__ for t in _FORMULAS)}")
    return formula(config)


def count_parameters(config: GPTConfig | BertConfig | Seq2SeqConfig) -> int:
    """Total parameters of the model ``config`` describes (tied matrices counted once)."""
    return sum(parameter_breakdown(config).values())
