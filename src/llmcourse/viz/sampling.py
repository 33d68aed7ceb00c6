"""How decoding reshapes a model's next-token distribution: bar charts and a sampling panel.

- ``next_token_logits(model, tokenizer, prompt)``: the model's (V,) logits for the token after ``prompt``.
- ``next_token_view(logits, tokenizer, ...)``: the most probable tokens with their probability
  before (the model's own softmax) and after temperature, top-k and top-p, plus the entropy
  of both, the number of tokens that can still be drawn and the model probability they hold.
- ``plot_next_token_distribution(logits, tokenizer, ...)``: that view as a matplotlib bar chart.
- ``next_token_html(view)``: the same view as an HTML bar chart (no image, no JavaScript).
- ``sampling_panel(model, tokenizer, prompt)``: a widget with a prompt box and sliders for
  temperature, top-k and top-p that redraws the distribution and a sampled continuation;
  a note drawn with it says that reacting needs a running kernel (a saved page shows the
  starting settings).

Every probability shown comes from :func:`llmcourse.generation.next_token_probs`, and every
sample from :func:`llmcourse.generation.generate`.

Introduced in: the Generation chapter.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import matplotlib
import torch
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from llmcourse.generation import generate, next_token_probs

BEFORE_COLOUR = "#9ca3af"  # grey: the model's own distribution
AFTER_COLOUR = "#2563eb"  # blue: the distribution the next token is drawn from
REMOVED_COLOUR = "#b91c1c"  # dark red: the label of a token the filters removed

# Shown above the panel: on a saved page (the built book) nothing reacts to the sliders.
LIVE_NOTE = (
    "Needs a running kernel to react: in a live notebook the chart and the sample follow the "
    "prompt box, the sliders and the button; on a saved page they show the starting settings, "
    "computed when the page was built."
)


# ----------------------------------------------------------------------------- token text


def token_text(tokenizer: Any, token_id: int) -> str:
    """The text of one token; bytes that are only part of a UTF-8 character show as \\xNN."""
    if callable(getattr(tokenizer, "token_bytes", None)):
        return bytes(tokenizer.token_bytes(token_id)).decode("utf-8", errors="backslashreplace")
    if callable(getattr(tokenizer, "id_to_token", None)):
        return str(tokenizer.id_to_token(token_id))
    return tokenizer.decode([token_id])


def visible(text: str) -> str:
    """A token's text with its whitespace made visible: ␣ for a space, ↵ for a newline, → for a tab."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "→") or "∅"


@functools.lru_cache(maxsize=None)
def _font_charmap(font_file: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_file).get_charmap())


def _drawable(label: str, family: str | list[str] | None = None) -> str:
    """``label`` with any character the plotting font lacks written as \\uXXXX (a missing glyph warns)."""
    font = font_manager.findfont(font_manager.FontProperties(family=family or matplotlib.rcParams["font.family"]))
    chars = _font_charmap(font)
    return "".join(c if ord(c) < 128 or ord(c) in chars else ascii(c)[1:-1] for c in label)


# ----------------------------------------------------------------------------- the numbers


def next_token_logits(model: Any, tokenizer: Any, prompt: str) -> Tensor:
    """The model's logits for the token that follows ``prompt``: a (V,) float tensor on the CPU.

    The prompt is cropped to its last ``model.config.block_size`` tokens, as in
    :func:`~llmcourse.generation.generate`.

    Introduced in: the Generation chapter.
    """
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty: give at least one token to continue")
    device = next(model.parameters()).device
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long, device=device)  # (1, T)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(idx).logits  # (1, T, V)
    finally:
        model.train(was_training)
    return logits[0, -1].float().cpu()  # (V,)


def entropy(probs: Tensor) -> float:
    """Entropy in nats, -sum p ln p over the tokens with p > 0: 0 for one sure token, ln V for uniform."""
    p = probs.double()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@dataclass(frozen=True)
class NextTokenView:
    """The ``n`` most probable next tokens before and after decoding settings, and summary numbers.

    ``ids`` are sorted by the model's own probability (ties: lowest id first). ``before``
    is softmax(logits); ``after`` is ``next_token_probs(logits, temperature, top_k, top_p)``.
    ``n_kept`` counts the tokens with nonzero probability after, ``kept_mass`` is the
    model's own probability of those tokens, and ``shown_mass_*`` the mass the ``n`` bars hold.
    """

    ids: list[int]
    labels: list[str]
    before: list[float]
    after: list[float]
    temperature: float
    top_k: int | None
    top_p: float | None
    entropy_before: float
    entropy_after: float
    n_kept: int
    vocab_size: int
    kept_mass: float
    shown_mass_before: float
    shown_mass_after: float

    @property
    def settings(self) -> str:
        """The decoding settings in words, e.g. ``T = 0.7, top-k = 40``."""
        parts = ["greedy (T = 0)" if self.temperature == 0 else f"T = {self.temperature:g}"]
        if self.temperature != 0 and self.top_k is not None:
            parts.append(f"top-k = {self.top_k}")
        if self.temperature != 0 and self.top_p is not None:
            parts.append(f"top-p = {self.top_p:g}")
        return ", ".join(parts)

    @property
    def summary(self) -> str:
        """One line: entropy before and after, tokens kept, the model mass they hold."""
        return (f"entropy {self.entropy_before:.2f} → {self.entropy_after:.2f} nats · "
                f"{self.n_kept:,} of {self.vocab_size:,} tokens can be drawn · "
                f"they hold {self.kept_mass:.1%} of the model's probability")

    @property
    def summary_after(self) -> str:
        """One line about the distribution drawn from only: its entropy and the tokens kept."""
        return (f"entropy {self.entropy_after:.2f} nats · "
                f"{self.n_kept:,} of {self.vocab_size:,} tokens can be drawn")


def next_token_view(
    logits: Tensor,
    tokenizer: Any,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n: int = 30,
) -> NextTokenView:
    """The ``n`` most probable tokens of ``logits`` ((V,), one position) before and after decoding settings.

    Introduced in: the Generation chapter.
    """
    logits = torch.as_tensor(logits).detach().float().cpu()
    if logits.dim() != 1:
        raise ValueError(f"logits must be one position's (V,) scores, got shape {tuple(logits.shape)}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    before = torch.softmax(logits, dim=-1)  # (V,)
    after = next_token_probs(logits, temperature, top_k, top_p)  # (V,) validates the settings too
    order = torch.sort(logits, descending=True, stable=True).indices[:n]  # (n,) ties: lowest id first
    kept = after > 0
    return NextTokenView(
        ids=order.tolist(),
        labels=[token_text(tokenizer, int(i)) for i in order],
        before=before[order].tolist(),
        after=after[order].tolist(),
        temperature=float(temperature),
        top_k=top_k,
        top_p=top_p,
        entropy_before=entropy(before),
        entropy_after=entropy(after),
        n_kept=int(kept.sum()),
        vocab_size=logits.numel(),
        kept_mass=float(before[kept].double().sum()),
        shown_mass_before=float(before[order].double().sum()),
        shown_mass_after=float(after[order].double().sum()),
    )


# ----------------------------------------------------------------------------- matplotlib


def plot_next_token_distribution(
    logits: Tensor,
    tokenizer: Any,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n: int = 30,
    ax: Axes | None = None,
    title: str | None = None,
    show_before: bool = True,
) -> Figure:
    """Bars of the ``n`` most probable next tokens, labelled with their text.

    Grey bars: the model's own probabilities; blue bars: the probabilities after
    ``temperature``, ``top_k`` and ``top_p`` (as :func:`next_token_probs` computes them).
    A token the filters removed has its label in red. The title gives the
    settings, and a note in the corner the entropy before and after, the tokens kept and
    the model's probability they hold (without ``show_before``: the entropy and tokens kept).
    Draws on ``ax`` if given (a new figure otherwise); returns the figure.

    Introduced in: the Generation chapter.
    """
    view = next_token_view(logits, tokenizer, temperature, top_k, top_p, n)
    if ax is None:
        import matplotlib.pyplot as plt  # only when a new figure is asked for

        _, ax = plt.subplots(figsize=(9, 3.2))
    x = torch.arange(len(view.ids)).float()
    width = 0.42 if show_before else 0.8
    if show_before:
        ax.bar((x - width / 2).tolist(), view.before, width, color=BEFORE_COLOUR, label="model (T = 1)",
               gid="before")
    ax.bar((x + width / 2 if show_before else x).tolist(), view.after, width, color=AFTER_COLOUR,
           label=view.settings, gid="after")
    ax.set_xticks(x.tolist(), [_drawable(visible(label), "monospace") for label in view.labels], rotation=90,
                  fontsize=8, fontfamily="monospace")
    for tick, p in zip(ax.get_xticklabels(), view.after):
        if p == 0:
            tick.set_color(REMOVED_COLOUR)  # removed by the filters
    ax.set_xlim(-0.7, len(view.ids) - 0.3)
    ax.set_ylabel("probability")
    ax.set_title(title if title is not None else view.settings, fontsize=10)
    summary = view.summary if show_before else view.summary_after
    ax.text(0.99, 0.97, _drawable(summary.replace(" · ", "\n")), transform=ax.transAxes,
            ha="right", va="top", fontsize=8)
    ax.legend(loc="center right", fontsize=8, frameon=False)
    ax.grid(False)
    return ax.figure


# ----------------------------------------------------------------------------- HTML


def next_token_html(view: NextTokenView, sample: str | None = None, prompt: str | None = None) -> str:
    """``view`` as an HTML bar chart: one row per token, grey (model) and blue (after) bars.

    Each row carries ``data-token-id``, ``data-before`` and ``data-after`` attributes
    with the exact numbers. Every text is HTML-escaped. With ``sample``, a sampled
    continuation of ``prompt`` follows the chart.

    Introduced in: the Generation chapter.
    """
    top = max(max(view.before), max(view.after), 1e-12)
    rows = []
    for i, label, b, a in zip(view.ids, view.labels, view.before, view.after):
        removed = a == 0
        style = f"color:{REMOVED_COLOUR};text-decoration:line-through" if removed else ""
        rows.append(
            f'<tr class="llmcourse-next-token" data-token-id="{i}" data-before="{b!r}" data-after="{a!r}">'
            f'<td style="font-family:monospace;white-space:pre;padding:0 0.6em 0 0;{style}">'
            f"{html.escape(visible(label))}</td>"
            '<td style="width:100%;padding:1px 0">'
            f'<div style="background:{BEFORE_COLOUR};height:6px;width:{100 * b / top:.2f}%"></div>'
            f'<div style="background:{AFTER_COLOUR};height:8px;width:{100 * a / top:.2f}%"></div></td>'
            f'<td style="text-align:right;padding:0 0 0 0.6em;font-variant-numeric:tabular-nums">{b:.3f}</td>'
            f'<td style="text-align:right;padding:0 0 0 0.6em;font-variant-numeric:tabular-nums;'
            f'color:{AFTER_COLOUR}">{a:.3f}</td></tr>'
        )
    parts = [
        '<div class="llmcourse-sampling" style="font-size:0.85em;max-width:44em">',
        f'<div style="font-weight:600">Next token: {html.escape(view.settings)}</div>',
        f'<div class="llmcourse-summary" style="opacity:0.85;margin-bottom:0.3em">{html.escape(view.summary)}</div>',
        '<table style="width:100%;border-collapse:collapse"><thead><tr>'
        '<th style="text-align:left">token</th>'
        f'<th style="text-align:left;font-weight:400"><span style="color:{BEFORE_COLOUR}">■</span> model (T = 1)'
        f' &nbsp;<span style="color:{AFTER_COLOUR}">■</span> drawn from</th>'
        '<th style="text-align:right">model</th><th style="text-align:right">after</th></tr></thead>',
        f"<tbody>{''.join(rows)}</tbody></table>",
        f'<div style="opacity:0.75">the {len(view.ids)} tokens shown hold {view.shown_mass_before:.1%} of the '
        f"model's probability and {view.shown_mass_after:.1%} after the settings</div>",
    ]
    if sample is not None:
        parts.append(
            '<div class="llmcourse-sample" style="margin-top:0.5em;padding:0.4em;border-left:3px solid '
            f'{AFTER_COLOUR};white-space:pre-wrap;font-family:monospace">'
            f'<span style="opacity:0.6">{html.escape(prompt or "")}</span>{html.escape(sample)}</div>'
        )
    parts.append("</div>")
    return "".join(parts)


# ----------------------------------------------------------------------------- widget


def note_html(note: str) -> str:
    """The panel's note (by default, that it needs a running kernel) as an HTML string."""
    return f'<div class="llmcourse-live-note" style="font-size:0.85em;opacity:0.8">{html.escape(note)}</div>'


class SamplingPanel(widgets.VBox):
    """A prompt box and sliders for temperature, top-k and top-p over a model's next-token distribution.

    Build it with :func:`sampling_panel`. The top-k slider's 0 and the top-p slider's
    1 mean "off"; a temperature of 0 is greedy decoding. Introduced in: the Generation chapter.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt: str,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        n: int = 20,
        sample_tokens: int = 60,
        seed: int = 0,
        max_top_k: int = 100,
        note: str | None = LIVE_NOTE,
    ):
        self.model, self.tokenizer = model, tokenizer
        # Says, where the panel is drawn, that reacting needs a running kernel.
        self.note = widgets.HTML(value=note_html(note) if note else "")
        self.n, self.sample_tokens, self.seed = n, sample_tokens, seed
        style = {"description_width": "7em"}
        wide = widgets.Layout(width="32em")
        self.prompt = widgets.Text(value=prompt, description="Prompt", continuous_update=False,
                                   style=style, layout=widgets.Layout(width="95%"))
        self.temperature = widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                                               description="temperature", continuous_update=False,
                                               readout_format=".2f", style=style, layout=wide)
        self.top_k = widgets.IntSlider(value=top_k or 0, min=0, max=max_top_k, step=1,
                                       description="top-k (0: off)", continuous_update=False,
                                       style=style, layout=wide)
        self.top_p = widgets.FloatSlider(value=1.0 if top_p is None else top_p, min=0.05, max=1.0, step=0.05,
                                         description="top-p (1: off)", continuous_update=False,
                                         readout_format=".2f", style=style, layout=wide)
        self.resample = widgets.Button(description="another sample")  # no icon: icon fonts are not vendored
        self._logits_for: tuple[str, Tensor] | None = None
        # Rendered now, so a saved (non-live) page already shows a distribution and a sample.
        self.output = widgets.HTML(value=self.render())
        for control in (self.prompt, self.temperature, self.top_k, self.top_p):
            control.observe(self._refresh, names="value")
        self.resample.on_click(self._next_seed)
        children = [self.prompt, self.temperature, self.top_k, self.top_p, self.resample, self.output]
        super().__init__([self.note, *children] if note else children)

    def settings(self) -> dict[str, Any]:
        """The sliders as keyword arguments of :func:`next_token_probs` and :func:`generate`."""
        return {
            "temperature": float(self.temperature.value),
            "top_k": int(self.top_k.value) or None,
            "top_p": None if self.top_p.value >= 1.0 else float(self.top_p.value),
        }

    def logits(self) -> Tensor:
        """The model's next-token logits for the current prompt (computed once per prompt)."""
        prompt = self.prompt.value
        if self._logits_for is None or self._logits_for[0] != prompt:
            self._logits_for = (prompt, next_token_logits(self.model, self.tokenizer, prompt))
        return self._logits_for[1]

    def view(self) -> NextTokenView:
        """What the chart shows for the current prompt and sliders."""
        return next_token_view(self.logits(), self.tokenizer, n=self.n, **self.settings())

    def sample(self) -> str:
        """A continuation of the prompt drawn with the current settings (seeded, so it is repeatable)."""
        ids = torch.tensor(self.tokenizer.encode(self.prompt.value), dtype=torch.long)
        generator = torch.Generator().manual_seed(self.seed)
        out = generate(self.model, ids, self.sample_tokens, generator=generator, **self.settings())
        return self.tokenizer.decode(out[len(ids):].tolist())

    def render(self) -> str:
        """The panel's HTML for the current prompt and sliders."""
        try:
            return next_token_html(self.view(), self.sample(), self.prompt.value)
        except ValueError as err:  # an empty prompt, say: show why instead of raising in a callback
            return f"<pre>{html.escape(str(err))}</pre>"

    def _refresh(self, _change: Any = None) -> None:
        self.output.value = self.render()

    def _next_seed(self, _button: Any = None) -> None:
        self.seed += 1
        self._refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Viewers without widget support fall back to the static HTML.
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle.setdefault("text/html", self.note.value + self.output.value)
        return bundle


def sampling_panel(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n: int = 20,
    sample_tokens: int = 60,
    seed: int = 0,
    note: str | None = LIVE_NOTE,
) -> SamplingPanel:
    """A widget to explore decoding settings on ``model``'s next-token distribution after ``prompt``.

    Sliders set the temperature (0 is greedy), top-k (0 is off) and top-p (1 is off);
    a text box sets the prompt. The panel shows the ``n`` most probable tokens with
    their probability under the model and after the settings, the entropy, how many
    tokens can still be drawn, and a continuation of ``sample_tokens`` tokens sampled
    with those settings (seeded; the button draws another). It is filled in at
    creation, so a saved page shows the starting settings without a running kernel.
    Above it, ``note`` (``None`` for none) says by default that reacting needs a
    running kernel.

    Introduced in: the Generation chapter.
    """
    return SamplingPanel(model, tokenizer, prompt, temperature=temperature, top_k=top_k, top_p=top_p,
                         n=n, sample_tokens=sample_tokens, seed=seed, note=note)
