"""Recurrent models: the language model and the encoder-decoder that came before the transformer.

A recurrent network reads a sequence one token at a time and carries everything
it has read in one vector, its **hidden state**: ``h_t = cell(x_t, h_{t-1})``.
The cell is a GRU (Cho et al. 2014) or an LSTM (Hochreiter and Schmidhuber 1997),
whose gates decide how much of the old state to keep at each step.

- :class:`RNNLM` / :class:`RNNConfig`: a recurrent language model. The logits at
  position t are read off ``h_t``, which has seen tokens 0..t only, so it is
  causal by construction and has no context limit (but must squeeze all of the
  past into ``d_hidden`` numbers).
- :class:`RNNSeq2Seq` / :class:`RNNSeq2SeqConfig`: a recurrent encoder-decoder.
  A bidirectional GRU encodes the source; a GRU decoder writes the target one
  token at a time. With ``attention=False`` the decoder sees only the encoder's
  final hidden state (Cho et al. 2014; Sutskever et al. 2014): one vector for
  the whole source. With ``attention=True`` it computes, before each output
  token, additive attention weights over every encoder state (Bahdanau et al.
  2015) and reads their weighted sum.

:class:`RNNSeq2Seq` takes the arguments of the transformer :class:`~llmcourse.models.Seq2Seq`
(``model(src, tgt_in, targets, src_mask=...)`` and ``model.generate(...)``) and returns
the same :class:`~llmcourse.models.Seq2SeqOutput`, so one training loop drives all three.

Introduced in: the Introduction chapter (chapter 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from llmcourse.models.seq2seq import Seq2SeqOutput

CELLS = ("gru", "lstm")


def _check_sizes(config, fields: tuple[str, ...]) -> None:
    """``ValueError`` naming the field when a size is not a positive integer or dropout is outside [0, 1)."""
    name = type(config).__name__
    for field in fields:
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name}.{field} must be a positive integer, got {value!r}")
    dropout = getattr(config, "dropout", 0.0)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1), got {dropout!r}")


# ----------------------------------------------------------------------------- language model


@dataclass(frozen=True)
class RNNConfig:
    vocab_size: int = 258  # the 256 bytes and two special tokens, as in the CPU pretraining preset
    d_embed: int = 64  # width of the token embedding fed to the cell
    d_hidden: int = 320  # the hidden state: everything the model remembers of the past
    n_layer: int = 1  # stacked recurrent layers
    cell: str = "gru"  # "gru" or "lstm"
    dropout: float = 0.0  # between stacked layers (needs n_layer > 1)

    def __post_init__(self):
        _check_sizes(self, ("vocab_size", "d_embed", "d_hidden", "n_layer"))
        if self.cell not in CELLS:
            raise ValueError(f"RNNConfig.cell={self.cell!r}; choose one of {CELLS}")

    @classmethod
    def tiny(cls, vocab_size: int = 64, **overrides) -> RNNConfig:
        """One GRU layer with a hidden state of 64: trains in seconds on a CPU (tests)."""
        return cls(**{"vocab_size": vocab_size, "d_embed": 32, "d_hidden": 64} | overrides)


class RNNOutput(NamedTuple):
    logits: Tensor  # (B, T, vocab_size)
    loss: Tensor | None  # mean cross-entropy when targets are given
    state: Tensor | tuple[Tensor, Tensor]  # the hidden state after the last token, to continue from


class RNNLM(nn.Module):
    """A recurrent language model: embedding -> GRU or LSTM -> linear layer to the vocabulary.

    Introduced in: the Introduction chapter (chapter 1).
    """

    context_limit = None  # reads inputs of any length (the Trainer checks windows against this)

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_embed)
        rnn = nn.GRU if c.cell == "gru" else nn.LSTM
        self.rnn = rnn(c.d_embed, c.d_hidden, c.n_layer, batch_first=True, dropout=c.dropout if c.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(c.d_hidden, c.vocab_size)

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        state: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> RNNOutput:
        """idx: (B, T) token ids; targets: (B, T) the next tokens (-100 = ignore); state: to continue a stream."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        x = self.token_embedding(idx)  # (B, T, d_embed)
        hidden, state = self.rnn(x, state)  # (B, T, d_hidden): h_t has read tokens 0..t
        logits = self.lm_head(hidden)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return RNNOutput(logits, loss, state)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------- encoder-decoder


@dataclass(frozen=True)
class RNNSeq2SeqConfig:
    vocab_size: int = 32  # one vocabulary shared by source and target
    d_embed: int = 32
    d_hidden: int = 64  # per encoder direction, and the decoder's state
    attention: bool = True  # False: the decoder sees only the encoder's final hidden state
    d_attention: int = 64  # width of the additive attention's hidden layer

    def __post_init__(self):
        _check_sizes(self, ("vocab_size", "d_embed", "d_hidden", "d_attention"))
        if not isinstance(self.attention, bool):
            raise ValueError(f"RNNSeq2SeqConfig.attention must be True or False, got {self.attention!r}")

    @classmethod
    def tiny(cls, vocab_size: int = 32, **overrides) -> RNNSeq2SeqConfig:
        """Width 32 embeddings, hidden state 64, with attention: learns a toy task in seconds."""
        return cls(**{"vocab_size": vocab_size} | overrides)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015): score(s, h_j) = v^T tanh(W s + U h_j), softmax over the source positions j.

    Introduced in: the Introduction chapter (chapter 1).
    """

    def __init__(self, d_query: int, d_key: int, d_attention: int):
        super().__init__()
        self.query = nn.Linear(d_query, d_attention, bias=False)  # W
        self.key = nn.Linear(d_key, d_attention)  # U (and the bias)
        self.score = nn.Linear(d_attention, 1, bias=False)  # v

    def forward(self, query: Tensor, keys: Tensor, projected_keys: Tensor, mask: Tensor | None = None):
        """query (B, d_query), keys (B, S, d_key), projected_keys = self.key(keys) (B, S, d_attention).

        Returns (context (B, d_key), weights (B, S)); masked positions (mask == 0) get weight 0.
        """
        scores = self.score(torch.tanh(self.query(query)[:, None] + projected_keys)).squeeze(-1)  # (B, S)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool(), float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, S), each row sums to 1
        context = torch.bmm(weights[:, None], keys).squeeze(1)  # (B, 1, S) @ (B, S, d_key) -> (B, d_key)
        return context, weights


class RNNSeq2Seq(nn.Module):
    """Bidirectional GRU encoder, GRU decoder, with or without additive attention.

    At each output step t the decoder's GRU reads ``[embedding of y_{t-1}; c_t]``
    and the output layer reads ``[s_t; c_t; embedding of y_{t-1}]``. The context
    ``c_t`` is the only way the source reaches the decoder: the encoder's final
    state (the same vector at every step) without attention, a weighted sum of
    all encoder states with it. The decoder starts from tanh(W_init * final state).

    Introduced in: the Introduction chapter (chapter 1).
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.config = c = config
        d_context = 2 * c.d_hidden  # forward and backward encoder states side by side
        self.embedding = nn.Embedding(c.vocab_size, c.d_embed)
        self.encoder = nn.GRU(c.d_embed, c.d_hidden, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(d_context, c.d_hidden)
        self.decoder = nn.GRU(c.d_embed + d_context, c.d_hidden, batch_first=True)
        self.attention = AdditiveAttention(c.d_hidden, d_context, c.d_attention) if c.attention else None
        self.output = nn.Linear(c.d_hidden + d_context + c.d_embed, c.vocab_size)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """src: (B, S) -> (encoder states (B, S, 2 d_hidden), final state (B, 2 d_hidden))."""
        x = self.embedding(src)  # (B, S, d_embed)
        if src_mask is None:
            states, final = self.encoder(x)  # (B, S, 2H), (2, B, H)
        else:  # pack, so that neither direction reads the padding
            lengths = src_mask.long().sum(dim=1)
            if int(lengths.min()) < 1:
                raise ValueError("src_mask: every source sequence needs at least one real token")
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            states, final = self.encoder(packed)
            states, _ = pad_packed_sequence(states, batch_first=True, total_length=src.size(1))  # (B, S, 2H)
        final = torch.cat([final[0], final[1]], dim=-1)  # (B, 2H): forward read all of it, backward too
        return states, final

    def start_state(self, final: Tensor) -> Tensor:
        """(B, 2 d_hidden) -> the decoder's first state (1, B, d_hidden)."""
        return torch.tanh(self.init_state(final))[None]

    def decode(
        self,
        tgt: Tensor,
        states: Tensor,
        final: Tensor,
        state: Tensor,
        src_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """tgt: (B, T) inputs (BOS first) -> (logits (B, T, vocab), last state (1, B, H), weights (B, T, S) or None)."""
        e = self.embedding(tgt)  # (B, T, d_embed)
        if self.attention is None:  # the same context at every step: run the whole GRU at once
            context = final[:, None].expand(-1, tgt.size(1), -1)  # (B, T, 2H)
            hidden, state = self.decoder(torch.cat([e, context], dim=-1), state)  # (B, T, H)
            logits = self.output(torch.cat([hidden, context, e], dim=-1))  # (B, T, vocab)
            return logits, state, None
        keys = self.attention.key(states)  # (B, S, d_attention), computed once per source
        hidden, contexts, weights = [], [], []
        for t in range(tgt.size(1)):  # c_t depends on s_{t-1}: one step at a time
            context, w = self.attention(state[0], states, keys, src_mask)  # (B, 2H), (B, S)
            out, state = self.decoder(torch.cat([e[:, t], context], dim=-1)[:, None], state)  # (B, 1, H)
            hidden.append(out[:, 0])
            contexts.append(context)
            weights.append(w)
        hidden_t, context_t = torch.stack(hidden, 1), torch.stack(contexts, 1)  # (B, T, H), (B, T, 2H)
        logits = self.output(torch.cat([hidden_t, context_t, e], dim=-1))  # (B, T, vocab)
        return logits, state, torch.stack(weights, 1)  # weights (B, T, S)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        targets: Tensor | None = None,
        *,
        src_mask: Tensor | None = None,
        output_attentions: bool = False,
    ) -> Seq2SeqOutput:
        """Teacher forcing, as :class:`~llmcourse.models.Seq2Seq`: ``tgt`` starts with BOS, ``targets`` is the target.

        With ``output_attentions`` and attention on, ``cross_attentions`` holds one
        tensor (B, 1, T_tgt, T_src): one "layer" with one "head", each row summing to 1.
        """
        _check_ids(src, "src")
        _check_ids(tgt, "tgt")
        states, final = self.encode(src, src_mask)
        logits, _, weights = self.decode(tgt, states, final, self.start_state(final), src_mask)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        cross = (weights[:, None],) if output_attentions and weights is not None else None  # (B, 1, T, S)
        return Seq2SeqOutput(logits, loss, None, None, cross)

    @torch.no_grad()
    def generate(
        self, src: Tensor, max_new_tokens: int, bos_id: int, eos_id: int | None = None, src_mask: Tensor | None = None
    ) -> Tensor:
        """Greedy decoding, one token at a time: (B, S) -> (B, 1 + n) starting with BOS (as ``Seq2Seq.generate``)."""
        _check_ids(src, "src")
        states, final = self.encode(src, src_mask)
        state = self.start_state(final)
        out = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            logits, state, _ = self.decode(out[:, -1:], states, final, state, src_mask)  # the newest token only
            next_id = logits[:, -1].argmax(-1)  # (B,)
            if eos_id is not None:
                next_id = next_id.masked_fill(done, eos_id)
                done |= next_id == eos_id
            out = torch.cat([out, next_id[:, None]], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _check_ids(ids: Tensor, name: str) -> None:
    if ids.dim() != 2 or ids.size(1) == 0:
        raise ValueError(f"{name} must be (batch, time) token ids with time >= 1, got shape {tuple(ids.shape)}")
