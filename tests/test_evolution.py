"""The Introduction chapter's experiments: a GRU and a GPT through the course's Trainer, and the copy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from llmcourse.analysis.evolution import (
    BOS,
    FIRST_SYMBOL,
    copy_accuracy,
    copy_batch,
    train_seq2seq,
)
from llmcourse.models import GPT, RNNLM, GPTConfig, RNNConfig, RNNSeq2Seq, RNNSeq2SeqConfig
from llmcourse.training import CausalLM, TrainConfig, Trainer

SEEDS = range(5)


@pytest.mark.parametrize("reverse", [False, True])
def test_copy_batch_is_the_copy_with_bos_first(reverse):
    src, tgt_in, targets = copy_batch(6, 4, torch.Generator().manual_seed(0), n_symbols=5, reverse=reverse)
    assert src.shape == tgt_in.shape == targets.shape == (4, 6)
    assert torch.equal(targets, src.flip(1) if reverse else src)
    assert torch.all(tgt_in[:, 0] == BOS)
    assert torch.equal(tgt_in[:, 1:], targets[:, :-1])  # teacher forcing: shifted right by one
    assert src.min() >= FIRST_SYMBOL and src.max() < FIRST_SYMBOL + 5
    assert len(src.unique()) > 1  # not one symbol repeated


def test_copy_batch_depends_only_on_the_generator():
    a = copy_batch(8, 16, torch.Generator().manual_seed(3))
    b = copy_batch(8, 16, torch.Generator().manual_seed(3))
    c = copy_batch(8, 16, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", ["length", "batch_size", "n_symbols"])
@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_copy_batch_names_a_bad_argument(name, bad):
    kwargs = {"length": 4, "batch_size": 2, "n_symbols": 3, name: bad}
    with pytest.raises(ValueError, match=name):
        copy_batch(generator=torch.Generator(), **kwargs)


class _Oracle(nn.Module):
    """Stand-in model whose generate() returns the source reversed, or unchanged."""

    def __init__(self, reverse: bool):
        super().__init__()
        self.reverse = reverse
        self.weight = nn.Parameter(torch.zeros(1))

    def generate(self, src, max_new_tokens, bos_id):
        out = src.flip(1) if self.reverse else src
        return torch.cat([torch.full((len(src), 1), bos_id), out[:, :max_new_tokens]], dim=1)


def test_copy_accuracy_scores_symbols_not_sequences():
    assert copy_accuracy(_Oracle(reverse=False), 7, n=50) == 1.0
    assert copy_accuracy(_Oracle(reverse=True), 7, n=50, reverse=True) == 1.0
    # reversing instead of copying a length-5 sequence is right only in the middle (and by chance)
    wrong = copy_accuracy(_Oracle(reverse=True), 5, n=2000, n_symbols=10)
    assert 0.2 + 0.8 * 0.1 - 0.03 < wrong < 0.2 + 0.8 * 0.1 + 0.03


def _stream(n=4000, seed=0):
    """A token stream with a learnable rule: every token is followed by (token + 1) mod 16."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 16, n // 8)
    return np.concatenate([(s + np.arange(8)) % 16 for s in starts])


def _model(kind: str, block_size: int = 16) -> nn.Module:
    if kind == "gru":
        return RNNLM(RNNConfig(vocab_size=16, d_embed=16, d_hidden=32))
    return GPT(GPTConfig(vocab_size=16, block_size=block_size, n_layer=1, n_head=2, d_model=32))


def _trainer(model: nn.Module, seed: int, steps: int = 80, block_size: int = 16) -> Trainer:
    config = TrainConfig(max_steps=steps, batch_size=16, lr=1e-2, warmup_steps=steps // 10, eval_interval=steps,
                         eval_batches=2, seed=seed, progress=False)
    return Trainer(model, CausalLM(block_size), _stream(seed=seed), _stream(800, seed=seed + 100), config)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["gru", "gpt"])
def test_the_trainer_teaches_a_rnn_and_a_gpt_the_same_rule(kind, seed):
    """The chapter trains its GRU and its small GPT with the course's Trainer: both must learn."""
    torch.manual_seed(seed)
    history = _trainer(_model(kind), seed).fit()
    assert len(history.train_loss) == 80
    # 7 of every 8 next tokens are determined: the loss falls from ln 16 = 2.77 to near ln(16) / 8 = 0.35
    assert history.train_loss[0] > 2.4 and np.mean(history.train_loss[-10:]) < 1.0
    assert history.val_loss[-1] < 1.0


def test_a_rnn_and_a_gpt_see_the_same_batches():
    """Same TrainConfig seed, same windows: the ladder's two networks get the same data in the same order."""
    seen = {}
    for kind in ("gru", "gpt"):
        torch.manual_seed(0)
        model = _model(kind)
        inputs = []
        original = model.forward
        model.forward = lambda idx, *a, **k: (inputs.append(idx.clone()), original(idx, *a, **k))[1]
        _trainer(model, seed=3, steps=5).fit()
        seen[kind] = inputs[:5]  # the five training batches (evaluation comes after them)
    assert all(torch.equal(a, b) for a, b in zip(seen["gru"], seen["gpt"]))


def test_a_rnn_has_no_context_limit_for_the_trainer():
    """A GPT refuses windows longer than its context; a recurrent network reads any length."""
    with pytest.raises(ValueError, match="context"):
        _trainer(_model("gpt", block_size=8), seed=0, steps=1, block_size=16)
    _trainer(_model("gru"), seed=0, steps=1, block_size=200).fit()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_train_seq2seq_learns_short_copies_with_attention(seed, reverse):
    torch.manual_seed(seed)
    model = RNNSeq2Seq(RNNSeq2SeqConfig(vocab_size=FIRST_SYMBOL + 4, d_embed=16, d_hidden=32, d_attention=32))
    losses = train_seq2seq(model, steps=150, lengths=[3, 4], lr=1e-2, batch_size=32, seed=seed,
                           n_symbols=4, reverse=reverse)
    assert len(losses) == 150
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert copy_accuracy(model, 4, n=200, n_symbols=4, reverse=reverse) > 0.9  # chance is 0.25


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": 0}, "steps"), ({"lengths": []}, "lengths"), ({"lengths": [3, 0]}, "lengths"),
    ({"lr": -1.0}, "lr"),
])
def test_train_seq2seq_names_a_bad_argument(kwargs, name):
    model = RNNSeq2Seq(RNNSeq2SeqConfig.tiny(vocab_size=8))
    args = {"steps": 1, "lengths": [3], "lr": 1e-3, "n_symbols": 4} | kwargs
    with pytest.raises(ValueError, match=name):
        train_seq2seq(model, **args)
