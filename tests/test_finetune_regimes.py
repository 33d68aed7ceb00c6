"""Training the top of a frozen encoder on stored states, the cached regimes, the sentiment panel.

Independent references: the classifier's own forward pass on token ids (the stored
states must give exactly its output), a parameter-by-parameter comparison before
and after training, and the sampling frequencies of the length-pooled batches.
"""

import json

import pytest
import torch

from llmcourse.finetune import (
    BertClassifier,
    CachedClassification,
    CachedStates,
    LabelledSentences,
    Regime,
    TopClassifier,
    cached_scores,
    fine_tune,
    frozen_states,
    sentence_scores,
)
from llmcourse.finetune.cached import states_mask, top_states
from llmcourse.finetune.regimes import PeakMemory
from llmcourse.models import Bert, BertConfig
from llmcourse.training import Classification, TrainConfig, Trainer
from llmcourse.training.objectives import similar_length_rows
from llmcourse.viz import sentiment_bars_html, sentiment_panel


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


def tiny_classifier(seed: int = 0, n_layer: int = 3) -> BertClassifier:
    torch.manual_seed(seed)
    return BertClassifier(Bert(BertConfig.tiny(n_layer=n_layer, dropout=0.0)), dropout=0.0).eval()


def random_sentences(n: int = 40, width: int = 12, seed: int = 0) -> LabelledSentences:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, width + 1, (n,), generator=g)
    ids = torch.zeros(n, width, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        ids[i, :length] = torch.randint(5, 500, (length,), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    return LabelledSentences(ids, labels)


# ----------------------------------------------------------------------------- stored states


@pytest.mark.parametrize("k", [0, 1, 3])
def test_the_top_on_stored_states_gives_exactly_the_classifiers_output(k):
    model, data = tiny_classifier(), random_sentences()
    states = frozen_states(model, data, k=k, batch_size=7)
    assert states.states.shape == (40, 12, 64)
    assert torch.equal(states_mask(states.states), data.attention_mask())  # padding = exact zero vectors
    with torch.no_grad():
        direct = model(data.ids, data.attention_mask())
        via_top = TopClassifier(model, k)(states.states)
    torch.testing.assert_close(via_top, direct, atol=1e-5, rtol=1e-5)
    probs = torch.softmax(direct, -1)[:, 1]
    torch.testing.assert_close(cached_scores(TopClassifier(model, k), states, batch_size=5), probs,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sentence_scores(model, data, batch_size=6), probs, atol=1e-5, rtol=1e-5)


def test_top_states_finish_the_pass():
    model, data = tiny_classifier(), random_sentences()
    below = frozen_states(model, data, k=2)
    final = top_states(model, below, k=2)
    with torch.no_grad():
        hidden = model.encoder(data.ids, data.attention_mask()).last_hidden_state * data.attention_mask()[..., None]
    torch.testing.assert_close(final.states, hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final.states, frozen_states(model, data, k=0).states, atol=1e-5, rtol=1e-5)


def test_k_outside_the_blocks_and_malformed_states_are_refused():
    model, data = tiny_classifier(), random_sentences()
    with pytest.raises(ValueError, match="k=4 is larger than the number of blocks"):
        frozen_states(model, data, k=4)
    with pytest.raises(ValueError, match="non-negative"):
        TopClassifier(model, -1)
    with pytest.raises(ValueError, match=r"\(N, T, d\) float"):
        CachedStates(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels has 2 entries for 3 sentences"):
        CachedStates(torch.zeros(3, 4, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        CachedStates(torch.zeros(3, 4, 8), torch.tensor([0, 1, 2]))


def test_training_the_top_changes_only_the_top_of_the_shared_classifier():
    model, data = tiny_classifier(), random_sentences(64)
    model.requires_grad_(False)
    for module in (model.encoder.blocks[-1], model.head):
        module.requires_grad_(True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    states = frozen_states(model, data, k=1)
    top = TopClassifier(model, 1)
    config = TrainConfig(max_steps=5, batch_size=8, lr=1e-2, warmup_steps=1, eval_interval=5, progress=False)
    Trainer(top, CachedClassification(states.width, pool=2), states, states, config).fit()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith(("encoder.blocks.2.", "head.")) for name in changed), changed
    assert any(name.startswith("encoder.blocks.2.") for name in changed)


# ----------------------------------------------------------------------------- batches of similar length


def test_length_pooled_batches_keep_every_row_equally_likely_and_cut_padding():
    lengths = torch.tensor([2, 30, 3, 29, 4, 28, 5, 27] * 8)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(lengths))
    spread_pooled, spread_plain = [], []
    for _ in range(3000):
        rows = similar_length_rows(lengths, 8, 4, g)
        assert rows.shape == (8,)
        counts += torch.bincount(rows, minlength=len(lengths))
        spread_pooled.append((lengths[rows].max() - lengths[rows].min()).item())
        plain = similar_length_rows(lengths, 8, 1, g)
        spread_plain.append((lengths[plain].max() - lengths[plain].min()).item())
    expected = 3000 * 8 / len(lengths)
    assert (counts - expected).abs().max() < 0.25 * expected  # each row about as often (chance: < 0.12)
    short, long = counts[lengths < 10].sum(), counts[lengths > 10].sum()
    assert abs(short - long) < 0.05 * counts.sum()  # the short and the long half equally often
    assert sum(spread_pooled) < 0.5 * sum(spread_plain)


def test_pool_one_draws_the_same_batches_as_before():
    data = random_sentences(50)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ids, _ = Classification(block_size=data.width).batch(data, 8, g1)
    rows = torch.randint(50, (8,), generator=g2)
    expected = data.ids[rows]
    assert torch.equal(ids, expected[:, : ids.size(1)])
    with pytest.raises(ValueError, match="pool must be an integer >= 1"):
        Classification(block_size=4, pool=0)


# ----------------------------------------------------------------------------- regimes and their cache


def small_regime(name="head", **overrides):
    values = {"top_blocks": 0, "steps": 4, "batch_size": 8, "lr": 1e-2, "warmup_steps": 1}
    return Regime(name, **values | overrides)


def test_regime_settings_fail_early_with_the_field_name():
    with pytest.raises(ValueError, match="choose top_blocks or lora_rank"):
        Regime("x", top_blocks=1, lora_rank=4)
    with pytest.raises(ValueError, match="TrainConfig.max_steps"):
        Regime("x", steps=0)
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        Regime("x", lr=-1.0)
    with pytest.raises(ValueError, match="lora_rank must be an integer >= 0"):
        Regime("x", lora_rank=-2)
    assert small_regime().key("a", "b") != small_regime(lr=2e-2).key("a", "b")
    assert small_regime().key("a", "b") != small_regime().key("a", "c")  # other data, other file


@pytest.mark.parametrize("regime", [small_regime(), small_regime("last-1", top_blocks=1),
                                    small_regime("lora", top_blocks=None, lora_rank=2, lora_alpha=4),
                                    small_regime("full", top_blocks=None)])
def test_fine_tune_trains_once_then_loads_the_same_weights(regime, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    data = random_sentences(64)
    states = None
    if regime.cached:
        states = (frozen_states(tiny_classifier(), data, regime.top_blocks),) * 2
    first = fine_tune(regime, tiny_classifier, "base", data, data, states)
    record = json.loads(first.path.with_suffix(".json").read_text())
    assert record["trainable"] == sum(p.numel() for p in first.model.parameters() if p.requires_grad)
    assert record["sentences_seen"] == 32 and record["training_seconds"] > 0
    assert first.model(data.ids).shape == (64, 2)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached regime trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    second = fine_tune(regime, tiny_classifier, "base", data, data, states)
    assert second.record == first.record
    torch.testing.assert_close(sentence_scores(second.model, data), sentence_scores(first.model, data))
    untrained = sentence_scores(tiny_classifier(), data)
    assert not torch.allclose(sentence_scores(second.model, data), untrained)  # it did learn something


def test_states_given_as_a_function_are_computed_only_when_the_regime_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    data, calls = random_sentences(48), []

    def states():
        calls.append(1)
        return (frozen_states(tiny_classifier(), data, 1),) * 2

    regime = small_regime("last-1", top_blocks=1)
    first = fine_tune(regime, tiny_classifier, "base", data, data, states)
    assert calls == [1]
    second = fine_tune(regime, tiny_classifier, "base", data, data, states)
    assert calls == [1]  # loaded from the cache: the frozen encoder never ran again
    torch.testing.assert_close(sentence_scores(second.model, data), sentence_scores(first.model, data))
    eager = fine_tune(regime, tiny_classifier, "base", data, data, states())
    assert eager.path == first.path  # the same cache entry either way


def test_a_cached_regime_without_states_and_a_foreign_cache_file_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    data = random_sentences(32)
    with pytest.raises(ValueError, match="pass states=\\(train, val\\)"):
        fine_tune(small_regime(), tiny_classifier, "base", data, data)
    full = small_regime("full", top_blocks=None)
    done = fine_tune(full, tiny_classifier, "base", data, data)
    from safetensors.torch import save_file

    save_file({"head.weight": torch.zeros(2, 64)}, str(done.path))  # not what the regime trains
    with pytest.raises(RuntimeError, match="does not hold this regime's trained tensors"):
        fine_tune(full, tiny_classifier, "base", data, data)


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(interval=0.001) as memory:
        block = torch.ones(50 * 2**20 // 4)  # 50 MB, touched
        block += 1
        import time

        time.sleep(0.05)
        del block
    assert memory.extra_mb > 35, memory.extra_mb


# ----------------------------------------------------------------------------- the panel


def test_sentiment_bars_show_each_probability_and_escape_names():
    page = sentiment_bars_html({"<b>regime</b>": 0.9, "other": 0.2}, "a <i>fine</i> film")
    assert "&lt;b&gt;regime&lt;/b&gt;" in page and "<b>regime" not in page
    assert "0.900" in page and "0.200" in page and "width:90.0%" in page
    assert "&lt;i&gt;fine&lt;/i&gt;" in page
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        sentiment_bars_html({"bad": 1.5})
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        sentiment_bars_html({"bad": float("nan")})


def test_sentiment_panel_is_drawn_at_creation_and_follows_the_sentence():
    scorers = {"length": lambda text: min(1.0, len(text) / 100), "constant": lambda text: 0.25}
    panel = sentiment_panel(scorers, "x" * 50)
    assert "0.500" in panel.output.value and "0.250" in panel.output.value
    assert "running kernel" in panel.note.value
    assert "0.500" in panel._repr_mimebundle_()["text/html"]
    panel.sentence.value = "x" * 80
    assert "0.800" in panel.output.value
    panel.sentence.value = "   "
    assert "Type a sentence" in panel.output.value
    assert sentiment_panel(scorers, "ok", note=None).note.value == ""
    with pytest.raises(ValueError, match="at least one classifier"):
        sentiment_panel({}, "ok")


# ----------------------------------------------------------------------------- vectorised bootstrap metrics


def test_the_bootstrap_rows_equal_scikit_learn_on_every_resample():
    import numpy as np
    from scipy import stats
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from llmcourse.finetune import bootstrap_interval, metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (60, 30))
    s = np.round(rng.random((60, 30)), 1)  # ties, and scores exactly 0.5
    y[0], y[1] = 1, 0  # rows with one class only
    auc = metrics._auc_rows(y, s)
    assert np.isnan(auc[0]) and np.isnan(auc[1])
    for i in range(2, 60):
        assert abs(auc[i] - roc_auc_score(y[i], s[i])) < 1e-12
    for i in range(60):
        assert abs(metrics._accuracy_rows(y, s)[i] - accuracy_score(y[i], s[i] >= 0.5)) < 1e-12
        assert abs(metrics._macro_f1_rows(y, s)[i] - f1_score(y[i], s[i] >= 0.5, average="macro", zero_division=0)) < 1e-12
    # the vectorised bootstrap gives the interval of SciPy's one-resample-at-a-time bootstrap
    labels, scores = y[2:].ravel()[:500], s[2:].ravel()[:500]
    for name, fast in (("roc_auc", roc_auc_score), ("macro_f1", lambda a, b: f1_score(a, b >= 0.5, average="macro"))):
        slow = stats.bootstrap((labels, scores), lambda a, b: fast(a.astype(int), b), paired=True, vectorized=False,
                               n_resamples=300, method="percentile", rng=np.random.default_rng(1))
        got = bootstrap_interval(name, labels, scores, n_resamples=300, seed=1)
        assert abs(got.low - slow.confidence_interval.low) < 1e-12 and abs(got.high - slow.confidence_interval.high) < 1e-12


def test_paired_difference_scores_both_classifiers_on_the_same_resamples():
    import numpy as np
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    from llmcourse.finetune import paired_difference, roc_auc

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    a = y * 0.6 + rng.random(400)  # informative
    b = a + rng.normal(0, 0.05, 400)  # almost the same classifier
    got = paired_difference("roc_auc", y, a, b, n_resamples=300, seed=3)
    assert abs(got.value - (roc_auc(y, a) - roc_auc(y, b))) < 1e-12
    slow = stats.bootstrap((y, a, b), lambda y_, a_, b_: roc_auc_score(y_.astype(int), a_) - roc_auc_score(y_.astype(int), b_),
                           paired=True, vectorized=False, n_resamples=300, method="percentile",
                           rng=np.random.default_rng(3))
    assert abs(got.low - slow.confidence_interval.low) < 1e-12 and abs(got.high - slow.confidence_interval.high) < 1e-12
    # pairing: two near-identical classifiers differ by far less than either AUC's own interval width
    alone = paired_difference("roc_auc", y, a, 1 - y + rng.random(400) * 5, n_resamples=300)  # vs a poor one
    assert got.high - got.low < 0.3 * (alone.high - alone.low)
    with pytest.raises(ValueError, match="metric must be one of"):
        paired_difference("auc", y, a, b)
    with pytest.raises(ValueError, match=r"scores must be one number per label \(400\)"):
        paired_difference("accuracy", y, a, b[:3])


def test_the_shared_sentiment_classifier_is_chapter_8s_regime():
    """Later chapters load chapter 8's "head + last 2 blocks" classifier from the same cache entry."""
    import re
    from pathlib import Path

    from llmcourse.finetune.sentiment import HEAD_ONLY, LAST_TWO, MAX_TOKENS, TOP, positive_probability

    text = (Path(__file__).resolve().parents[1] / "chapters" / "finetuning.md").read_text(encoding="utf-8")
    calls = dict(re.findall(r'(Regime\("(head|last-2)".*?\))', text)[i][::-1] for i in range(2))
    assert eval(calls["head"], {"Regime": Regime}) == HEAD_ONLY
    assert eval(calls["last-2"], {"Regime": Regime, "TOP": TOP}) == LAST_TWO
    assert f"MAX_TOKENS = {MAX_TOKENS}" in text
    with pytest.raises(TypeError, match="not one string"):
        positive_probability(None, None, "one sentence")
