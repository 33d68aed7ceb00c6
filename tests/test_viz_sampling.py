"""Next-token views, the bar chart and the sampling panel (llmcourse.viz.sampling).

The model is a tiny untrained GPT over a small BPE tokenizer: its distribution is
nearly flat but not tied, which is enough to check that what the chart and the panel
show is exactly what ``next_token_probs`` and ``generate`` compute.
"""

from __future__ import annotations

import math
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from llmcourse.data import tiny_corpus  # noqa: E402
from llmcourse.generation import generate, next_token_probs  # noqa: E402
from llmcourse.models import GPT, GPTConfig  # noqa: E402
from llmcourse.tokenizers import BPETokenizer  # noqa: E402
from llmcourse.viz import (  # noqa: E402
    next_token_html,
    next_token_logits,
    next_token_view,
    plot_next_token_distribution,
    sampling_panel,
)
from llmcourse.viz.sampling import entropy, visible  # noqa: E402

ROW = re.compile(r'<tr class="llmcourse-next-token" data-token-id="(\d+)" data-before="([^"]+)" data-after="([^"]+)">')
PROMPT = "The cat sat on the"


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(tiny_corpus(), vocab_size=300, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig.tiny(vocab_size=tokenizer.vocab_size, block_size=32))
    with torch.no_grad():  # logits 5x larger: a peaked but not one-hot distribution, so filters cut something
        gpt.final_norm.weight.mul_(5.0)
    return gpt.eval()


def shown(markup):
    """(ids, before, after) of the rows of a chart."""
    rows = ROW.findall(markup)
    return [int(i) for i, _, _ in rows], [float(b) for _, b, _ in rows], [float(a) for _, _, a in rows]


def reference_logits(model, tokenizer, prompt):
    with torch.no_grad():
        return model(torch.tensor([tokenizer.encode(prompt)])).logits[0, -1]


def test_logits_are_the_models_last_position(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    assert logits.shape == (tokenizer.vocab_size,)
    torch.testing.assert_close(logits, reference_logits(model, tokenizer, PROMPT))
    with pytest.raises(ValueError):
        next_token_logits(model, tokenizer, "")


def test_long_prompts_are_cropped_to_the_context(model, tokenizer):
    long = "the cat sat on the mat and " * 20
    ids = tokenizer.encode(long)
    assert len(ids) > model.config.block_size
    with torch.no_grad():
        expected = model(torch.tensor([ids[-model.config.block_size:]])).logits[0, -1]
    torch.testing.assert_close(next_token_logits(model, tokenizer, long), expected)


def test_entropy_of_known_distributions():
    assert entropy(torch.full((8,), 1 / 8)) == pytest.approx(math.log(8))
    assert entropy(torch.tensor([0.0, 1.0, 0.0])) == 0.0
    assert entropy(torch.tensor([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    "settings",
    [{}, {"temperature": 0.5}, {"temperature": 1.7, "top_k": 7}, {"top_p": 0.3}, {"temperature": 0.0}],
)
def test_view_matches_next_token_probs(model, tokenizer, settings):
    logits = next_token_logits(model, tokenizer, PROMPT)
    view = next_token_view(logits, tokenizer, n=25, **settings)
    before = torch.softmax(logits, -1)
    after = next_token_probs(logits, **settings)
    assert len(view.ids) == 25
    assert view.ids == torch.argsort(logits, descending=True)[:25].tolist()
    torch.testing.assert_close(torch.tensor(view.before), before[view.ids])
    torch.testing.assert_close(torch.tensor(view.after), after[view.ids])
    assert view.n_kept == int((after > 0).sum())
    assert view.kept_mass == pytest.approx(float(before[after > 0].sum()), abs=1e-6)
    assert view.entropy_before == pytest.approx(-(before * before.log()).sum().item(), abs=1e-5)
    assert view.entropy_after == pytest.approx(entropy(after))
    assert view.labels == [tokenizer.token_bytes(i).decode("utf-8", errors="backslashreplace") for i in view.ids]


def test_the_fixture_is_neither_flat_nor_one_hot(model, tokenizer):
    probs = torch.softmax(next_token_logits(model, tokenizer, PROMPT), -1)
    assert 0.05 < probs.max() < 0.5
    assert probs.topk(10).values.sum() < 0.6


def test_filters_keep_what_they_say(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    assert next_token_view(logits, tokenizer, top_k=5).n_kept == 5
    assert next_token_view(logits, tokenizer, temperature=0).n_kept == 1
    nucleus = next_token_view(logits, tokenizer, top_p=0.4)
    assert nucleus.kept_mass >= 0.4
    assert nucleus.entropy_after < nucleus.entropy_before
    flat = next_token_view(logits, tokenizer, temperature=2.0)
    assert flat.n_kept == tokenizer.vocab_size and flat.kept_mass == pytest.approx(1.0)
    assert flat.entropy_after > flat.entropy_before
    with pytest.raises(ValueError):
        next_token_view(logits, tokenizer, top_p=0.0)
    with pytest.raises(ValueError):
        next_token_view(logits[None], tokenizer)


def test_html_chart_rows_carry_the_numbers_and_escape_text(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    view = next_token_view(logits, tokenizer, top_k=3, n=10)
    markup = next_token_html(view, sample=" <script>x</script>", prompt="a < b")
    ids, before, after = shown(markup)
    assert ids == view.ids and before == view.before and after == view.after
    assert sum(a > 0 for a in after) == 3
    assert "<script>" not in markup and "&lt;script&gt;" in markup and "a &lt; b" in markup
    assert "3 of 300 tokens" in markup


def test_panel_renders_at_creation_with_an_html_fallback(model, tokenizer):
    panel = sampling_panel(model, tokenizer, PROMPT, n=12)
    ids, before, after = shown(panel.output.value)
    assert len(ids) == 12
    expected = next_token_probs(reference_logits(model, tokenizer, PROMPT))
    torch.testing.assert_close(torch.tensor(after), expected[ids])
    assert 'class="llmcourse-sample"' in panel.output.value
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].endswith(panel.output.value)
    assert "running kernel" in bundle["text/html"]  # the static fallback says it is static


def test_panel_says_it_needs_a_running_kernel(model, tokenizer):
    panel = sampling_panel(model, tokenizer, PROMPT, n=5, sample_tokens=2)
    assert panel.children[0] is panel.note and "running kernel" in panel.note.value
    custom = sampling_panel(model, tokenizer, PROMPT, n=5, sample_tokens=2, note="Run the notebook <to> play.")
    assert "&lt;to&gt;" in custom.note.value  # escaped like every other text
    silent = sampling_panel(model, tokenizer, PROMPT, n=5, sample_tokens=2, note=None)
    assert silent.children[0] is silent.prompt and silent.note.value == ""
    assert len(silent.children) == 6


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p", "expected"),
    [
        (0.4, 0, 1.0, {"temperature": 0.4}),
        (1.0, 4, 1.0, {"top_k": 4}),
        (1.3, 0, 0.5, {"temperature": 1.3, "top_p": 0.5}),
        (0.8, 6, 0.9, {"temperature": 0.8, "top_k": 6, "top_p": 0.9}),
        (0.0, 6, 0.5, {"temperature": 0.0}),
    ],
)
def test_sliders_redraw_the_distribution(model, tokenizer, temperature, top_k, top_p, expected):
    panel = sampling_panel(model, tokenizer, PROMPT, n=15)
    first = panel.output.value
    panel.temperature.value = temperature
    panel.top_k.value = top_k
    panel.top_p.value = top_p
    assert panel.output.value != first
    ids, _, after = shown(panel.output.value)
    probs = next_token_probs(reference_logits(model, tokenizer, PROMPT), **expected)
    torch.testing.assert_close(torch.tensor(after), probs[ids])
    kept = int((probs > 0).sum())
    assert f"{kept:,} of 300 tokens" in panel.output.value


def test_sample_follows_the_settings_and_the_seed(model, tokenizer):
    panel = sampling_panel(model, tokenizer, PROMPT, temperature=0.0, sample_tokens=8)
    prompt_ids = torch.tensor(tokenizer.encode(PROMPT))
    greedy = generate(model, prompt_ids, 8, temperature=0.0)
    assert panel.sample() == tokenizer.decode(greedy[len(prompt_ids):].tolist())

    panel.temperature.value = 1.5
    seeded = generate(model, prompt_ids, 8, temperature=1.5, generator=torch.Generator().manual_seed(panel.seed))
    assert panel.sample() == tokenizer.decode(seeded[len(prompt_ids):].tolist())
    assert panel.sample() == panel.sample()  # seeded: the page shows the same sample every time
    before = panel.seed
    panel.resample.click()
    assert panel.seed == before + 1


def test_prompt_box_changes_the_distribution(model, tokenizer):
    panel = sampling_panel(model, tokenizer, PROMPT)
    panel.prompt.value = "A dog"
    ids, _, after = shown(panel.output.value)
    expected = next_token_probs(reference_logits(model, tokenizer, "A dog"))
    torch.testing.assert_close(torch.tensor(after), expected[ids])
    panel.prompt.value = ""
    assert "empty" in panel.output.value and not shown(panel.output.value)[0]


def test_plot_has_one_labelled_bar_per_token_before_and_after(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    fig = plot_next_token_distribution(logits, tokenizer, temperature=0.8, top_k=5, n=20)
    try:
        ax = fig.axes[0]
        before = [p for p in ax.patches if p.get_gid() == "before"]
        after = [p for p in ax.patches if p.get_gid() == "after"]
        assert len(before) == len(after) == 20
        view = next_token_view(logits, tokenizer, temperature=0.8, top_k=5, n=20)
        assert [b.get_height() for b in before] == pytest.approx(view.before)
        assert [a.get_height() for a in after] == pytest.approx(view.after)
        assert sum(a.get_height() > 0 for a in after) == 5
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == [visible(text) for text in view.labels]
        red = [t.get_text() for t in ax.get_xticklabels() if t.get_color() == "#b91c1c"]
        assert len(red) == 15
        assert "T = 0.8, top-k = 5" in ax.get_title()
    finally:
        plt.close(fig)


def test_plot_draws_on_a_given_axis_without_the_model_bars(model, tokenizer):
    logits = next_token_logits(model, tokenizer, PROMPT)
    fig, (left, right) = plt.subplots(1, 2)
    try:
        out = plot_next_token_distribution(logits, tokenizer, top_p=0.5, n=8, ax=right, show_before=False)
        assert out is fig and not left.patches
        assert [p.get_gid() for p in right.patches] == ["after"] * 8
        view = next_token_view(logits, tokenizer, top_p=0.5)
        notes = [t.get_text() for t in right.texts]
        assert notes == [f"entropy {view.entropy_after:.2f} nats\n{view.n_kept:,} of 300 tokens can be drawn"]
    finally:
        plt.close(fig)


def test_visible_whitespace():
    assert visible(" the\n\t") == "␣the↵→"
    assert visible("") == "∅"


class CharListTokenizer:
    """A fixed list of token strings, some with characters the plotting fonts lack."""

    tokens = ["日本", " a", "\n", "\U0001f37f", "x"]

    def decode(self, ids):
        return "".join(self.tokens[i] for i in ids)


def test_plot_labels_never_ask_for_a_missing_glyph():
    # A missing glyph makes matplotlib warn, and a warning on stderr fails the book build.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_next_token_distribution(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0]), CharListTokenizer(), n=5)
        try:
            fig.canvas.draw()
            labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        finally:
            plt.close(fig)
    assert labels == ["\\u65e5\\u672c", "␣a", "↵", "\\U0001f37f", "x"]
