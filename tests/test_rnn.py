"""The recurrent models of the Introduction chapter (src/llmcourse/models/rnn.py)."""

from __future__ import annotations

import math

import pytest
import torch

from llmcourse.models import RNNLM, RNNConfig, RNNSeq2Seq, RNNSeq2SeqConfig

SEEDS = range(5)


def test_lm_shapes_loss_and_state():
    torch.manual_seed(0)
    model = RNNLM(RNNConfig.tiny(vocab_size=20))
    idx = torch.randint(0, 20, (3, 7))
    out = model(idx, idx)
    assert out.logits.shape == (3, 7, 20)
    assert out.state.shape == (1, 3, 64)  # (layers, B, d_hidden)
    # an untrained model is close to uniform: the loss is about ln V
    assert abs(out.loss.item() - math.log(20)) < 0.3
    # feeding the state back continues the stream exactly
    first, second = idx[:, :4], idx[:, 4:]
    cont = model(second, state=model(first).state).logits
    assert torch.allclose(cont, out.logits[:, 4:], atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_lm_is_causal(cell):
    torch.manual_seed(0)
    model = RNNLM(RNNConfig.tiny(vocab_size=20, cell=cell))
    idx = torch.randint(0, 20, (2, 9))
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 20
    a, b = model(idx).logits, model(changed).logits
    assert torch.equal(a[:, :6], b[:, :6]), "a later token changed earlier logits"
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("field, value", [("vocab_size", 0), ("d_hidden", -1), ("n_layer", 1.5), ("dropout", 1.0),
                                          ("cell", "rnn")])
def test_lm_config_rejects_nonsense(field, value):
    with pytest.raises(ValueError, match=field if field != "cell" else "cell"):
        RNNConfig.tiny(**{field: value})


@pytest.mark.parametrize("field, value", [("vocab_size", 0), ("d_attention", 0), ("attention", "yes")])
def test_seq2seq_config_rejects_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        RNNSeq2SeqConfig.tiny(**{field: value})


def test_seq2seq_rejects_bad_ids():
    model = RNNSeq2Seq(RNNSeq2SeqConfig.tiny())
    with pytest.raises(ValueError, match="src"):
        model(torch.zeros(3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="src_mask"):
        model(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.long),
              src_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]))


def test_attention_weights_sum_to_one_and_skip_padding():
    torch.manual_seed(0)
    model = RNNSeq2Seq(RNNSeq2SeqConfig.tiny())
    src = torch.randint(2, 32, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    out = model(src, torch.randint(2, 32, (2, 4)), src_mask=mask, output_attentions=True)
    (weights,) = out.cross_attentions
    assert weights.shape == (2, 1, 4, 5)  # (B, heads, T_tgt, T_src)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 1, 4))
    assert weights[1, 0, :, 3:].eq(0).all(), "padded source positions got attention"
    # padding does not change what the encoder reads: the same source, shorter, gives the same logits
    short = model(src[1:, :3], out.logits.new_zeros(1, 4, dtype=torch.long) + 2).logits
    padded = model(src, out.logits.new_zeros(2, 4, dtype=torch.long) + 2, src_mask=mask).logits[1:]
    assert torch.allclose(short, padded, atol=1e-5)


def test_without_attention_the_decoder_sees_one_vector():
    torch.manual_seed(0)
    model = RNNSeq2Seq(RNNSeq2SeqConfig.tiny(attention=False))
    assert model.attention is None
    out = model(torch.randint(2, 32, (2, 5)), torch.randint(2, 32, (2, 4)), output_attentions=True)
    assert out.cross_attentions is None and out.logits.shape == (2, 4, 32)


def test_generate_matches_teacher_forcing():
    """Greedy decoding one token at a time gives the tokens that teacher forcing on its own output predicts."""
    torch.manual_seed(0)
    for attention in (True, False):
        model = RNNSeq2Seq(RNNSeq2SeqConfig.tiny(attention=attention)).eval()
        src = torch.randint(2, 32, (3, 6))
        out = model.generate(src, 5, bos_id=1)
        assert out.shape == (3, 6) and out[:, 0].eq(1).all()
        logits = model(src, out[:, :-1]).logits
        assert torch.equal(logits.argmax(-1), out[:, 1:])


def _reversal_batch(generator, n, length=6, vocab=12, bos=1):
    src = torch.randint(2, vocab, (n, length), generator=generator)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((n, 1), bos), tgt[:, :-1]], 1), tgt


@pytest.mark.parametrize("seed", SEEDS)
def test_attention_rnn_learns_to_reverse(seed):
    """150 steps: 0.96-1.0 of held-out tokens right over seeds 0-5 (a 10-symbol chance level is 0.1); bar 0.8."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = RNNSeq2Seq(RNNSeq2SeqConfig.tiny(12))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(*_reversal_batch(g, 64)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    src, _, tgt = _reversal_batch(torch.Generator().manual_seed(1000 + seed), 256)
    accuracy = (model.eval().generate(src, 6, bos_id=1)[:, 1:] == tgt).float().mean().item()
    assert accuracy > 0.8, f"seed {seed}: {accuracy:.3f} of reversed tokens right"


@pytest.mark.parametrize("seed", SEEDS)
def test_rnn_lm_learns_a_repeating_stream(seed):
    """60 steps on 0 1 ... 15 0 1 ...: the loss falls to 0.02-0.03% of the first over seeds 0-5; bar 10%."""
    torch.manual_seed(seed)
    model = RNNLM(RNNConfig.tiny(vocab_size=16))
    stream = torch.arange(16).repeat(8)[None]  # each token fixes the next
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = model(stream[:, :-1], stream[:, 1:]).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first, f"seed {seed}: loss {first:.3f} -> {loss.item():.3f}"
