"""Fine-tuning a classifier on the course's Bert: pooling, heads, freezing, training through the Trainer.

Independent references: the exact parameter arithmetic of a block, and the same
sentences with and without padding.
"""

import pytest
import torch

from llmcourse.finetune import (
    BertClassifier,
    LabelledSentences,
    cls_pool,
    count_parameters,
    count_trainable,
    encode_sentences,
    freeze,
    mean_pool,
    pool,
    unfreeze_last,
)
from llmcourse.models import Bert, BertConfig, from_minilm
from llmcourse.tokenizers import WordPieceTokenizer
from llmcourse.training import Classification, TrainConfig, Trainer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


SENTENCES = [
    "a gripping, beautifully acted film.",
    "dull, predictable and far too long",
    "ok",
    "I sat on the bank of the river and watched the water flow by, slowly, for hours.",
]


@pytest.fixture(scope="module")
def minilm():
    return from_minilm()


def padded(rows: list[list[int]], width: int) -> torch.Tensor:
    ids = torch.zeros(len(rows), width, dtype=torch.long)  # (B, width), [PAD] = 0
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids


# ----------------------------------------------------------------------------- pooling


def test_mean_pooling_leaves_padding_out_and_cls_pooling_takes_position_0():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), the last is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]
    assert cls_pool(hidden, mask).tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_logits_do_not_depend_on_how_much_padding_a_batch_adds(minilm, pooling):
    tok = WordPieceTokenizer.from_minilm()
    rows = [tok.encode(s) for s in SENTENCES]
    longest = max(map(len, rows))
    torch.manual_seed(0)
    model = BertClassifier(minilm, n_classes=3, pooling=pooling).eval()
    with torch.no_grad():
        reference = model(padded(rows, longest))  # (4, 3)
        alone = torch.cat([model(torch.tensor([row])) for row in rows])  # each sentence with no padding at all
        # float32, measured: up to 1.4e-7 apart (the attention's sums run over more, masked, keys), so not
        # bit-identical; a tolerance of 1e-6 holds with a margin of 7x
        torch.testing.assert_close(alone, reference, rtol=0, atol=1e-6)
        for width in (longest + 1, longest + 7, longest + 40, 128):
            torch.testing.assert_close(model(padded(rows, width)), reference, rtol=0, atol=1e-6)
        # the mask is what makes it so: the same batch with its padding attended to and averaged gives other logits
        wide = padded(rows, longest + 7)
        assert (model(wide, torch.ones_like(wide)) - reference).abs().max() > 1e-3


# ----------------------------------------------------------------------------- freezing and counting


def block_parameters(d: int, f: int) -> int:
    """One post-norm block: q, k, v, out (d x d + d each), up (d x f + f), down (f x d + d), two LayerNorms (2d each)."""
    return 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d


def test_trainable_counts_are_exact_for_each_regime():
    c = BertConfig.tiny(vocab_size=100, d_model=32, n_head=2, max_positions=16, n_layer=3, mlm_head=False)
    model = BertClassifier(Bert(c), n_classes=5)
    d, f, n_cls = 32, 4 * 32, 5
    head = d * n_cls + n_cls
    embeddings = 100 * d + 16 * d + 2 * d + 2 * d  # word, position, segment, LayerNorm
    pooler = d * d + d  # frozen by the classifier: no pooling uses it
    assert count_parameters(model) == embeddings + 3 * block_parameters(d, f) + pooler + head
    assert count_trainable(model) == embeddings + 3 * block_parameters(d, f) + head  # full fine-tuning
    freeze(model.encoder)
    assert count_trainable(model) == head
    unfreeze_last(model, 2)
    assert count_trainable(model) == head + 2 * block_parameters(d, f)
    assert all(not p.requires_grad for p in model.encoder.blocks[0].parameters())
    assert all(p.requires_grad for p in model.encoder.blocks[2].parameters())
    unfreeze_last(model, 3)
    assert count_trainable(model) == head + 3 * block_parameters(d, f)  # the embeddings stay frozen
    freeze(model)
    assert count_trainable(model) == 0


def test_minilm_classifier_counts(minilm):
    model = BertClassifier(minilm, n_classes=2)
    try:
        freeze(model.encoder)
        assert count_trainable(model) == 384 * 2 + 2
        unfreeze_last(model, 1)
        assert count_trainable(model) == 384 * 2 + 2 + block_parameters(384, 1_536)  # 1,774,464 + 770
    finally:
        minilm.requires_grad_(True)  # the module fixture is shared


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: unfreeze_last(m, 4), r"k=4 is larger than the number of blocks \(2\)"),
        (lambda m: unfreeze_last(m, -1), "k must be a non-negative integer"),
        (lambda m: BertClassifier(m.encoder, n_classes=1), "n_classes"),
        (lambda m: BertClassifier(m.encoder, pooling="max"), "pooling"),
        (lambda m: LabelledSentences(torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 2])), "labels must lie in 0..1"),
        (lambda m: LabelledSentences(torch.ones(2, 3, dtype=torch.long), torch.tensor([0, -1])), "labels"),
        (lambda m: LabelledSentences(torch.ones(2, 3, dtype=torch.long), torch.tensor([0.0, 1.0])), "labels"),
        (lambda m: LabelledSentences(torch.ones(2, 3, dtype=torch.long), torch.tensor([0])), "labels has 1 entries"),
    ],
)
def test_bad_input_names_the_field(call, message):
    model = BertClassifier(Bert(BertConfig.tiny()))
    with pytest.raises(ValueError, match=message):
        call(model)


def test_classification_loss_rejects_labels_outside_the_classes():
    model = BertClassifier(Bert(BertConfig.tiny()), n_classes=2)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        Classification(block_size=4).loss(model, torch.ones(2, 4, dtype=torch.long), torch.tensor([0, 3]))


def test_encode_sentences_frames_cuts_and_pads():
    tok = WordPieceTokenizer.from_minilm()
    data = encode_sentences(tok, ["ok", "a gripping, beautifully acted film."], [0, 1], max_length=5)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    assert data.ids[0].tolist() == [cls, tok.token_to_id("ok"), sep, 0, 0]
    assert data.ids[1, 0] == cls and data.ids[1, -1] == sep  # cut to 5 tokens, [SEP] kept
    assert data.attention_mask().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert data.labels.tolist() == [0, 1] and len(data) == 10


# ----------------------------------------------------------------------------- training through the Trainer

KEYWORD = 7  # class 1 sentences contain this token once; class 0 sentences never do


def keyword_task(n: int, seed: int) -> LabelledSentences:
    """Random sentences of 3 to 12 tokens (ids 10..99) after a start token; label = whether KEYWORD occurs."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 13, (n,), generator=g)  # (n,)
    ids = torch.randint(10, 100, (n, 13), generator=g)  # (n, 13)
    ids[:, 0] = 2
    labels = torch.randint(0, 2, (n,), generator=g)
    where = (torch.rand(n, generator=g) * (lengths - 1)).long() + 1  # a position after the start token
    positive = labels == 1
    ids[positive, where[positive]] = KEYWORD
    ids[torch.arange(13) >= lengths[:, None]] = 0  # padding
    return LabelledSentences(ids, labels)


def tiny_classifier(seed: int, pooling: str = "mean") -> BertClassifier:
    torch.manual_seed(seed)
    config = BertConfig.tiny(vocab_size=128, d_model=32, n_head=2, max_positions=16)
    return BertClassifier(Bert(config), n_classes=2, pooling=pooling)


def train_config(seed: int, **overrides) -> TrainConfig:
    values = dict(max_steps=40, batch_size=16, lr=3e-3, warmup_steps=5, eval_interval=40, eval_batches=4,
                  seed=seed, progress=False)
    return TrainConfig(**values | overrides)


# measured over seeds 0-5 (mean pooling, 40 steps): held-out accuracy 0.957-1.000, validation loss
# 0.105-0.329 from 0.68-0.71 at the first step; the asserts leave a margin on both
@pytest.mark.parametrize("seed", range(5))
def test_a_tiny_classifier_learns_the_keyword_task_through_the_trainer(seed):
    model = tiny_classifier(seed)
    train, val, test = keyword_task(512, seed), keyword_task(256, seed + 100), keyword_task(256, seed + 200)
    history = Trainer(model, Classification(block_size=13), train, val, train_config(seed)).fit()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test.ids, test.attention_mask()).argmax(1) == test.labels).float().mean().item()
    assert history.train_loss[0] > 0.6  # chance level, ln 2 = 0.69
    assert history.val_loss[-1] < 0.45
    assert accuracy > 0.9


def test_resuming_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    train, val = keyword_task(256, 0), keyword_task(64, 1)
    objective = Classification(block_size=13)
    whole = Trainer(tiny_classifier(0), objective, train, val, train_config(0, max_steps=12, eval_interval=4))
    whole.fit()

    path = str(tmp_path / "clf.pt")
    first = Trainer(tiny_classifier(0), objective, train, val,
                    train_config(0, max_steps=12, eval_interval=4, checkpoint_path=path))
    for _ in range(6):  # stop after 6 of 12 updates, as an interruption would
        first.train_step()
    first.save()
    torch.manual_seed(123)  # a fresh process would not share the interrupted run's random state
    second = Trainer(tiny_classifier(5), objective, train, val,
                     train_config(0, max_steps=12, eval_interval=4, checkpoint_path=path))
    second.fit()
    assert second.step == 12
    for a, b in zip(whole.raw_model.state_dict().values(), second.raw_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert whole.history.train_loss[6:] == second.history.train_loss[-6:]


def test_frozen_parameters_stay_exactly_as_they_were():
    model = tiny_classifier(0)
    freeze(model.encoder)
    unfreeze_last(model, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(model, Classification(block_size=13), keyword_task(128, 0), keyword_task(32, 1),
            train_config(0, max_steps=5, eval_interval=5)).fit()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p)
        assert changed == p.requires_grad, name  # trained parameters moved, frozen ones did not
