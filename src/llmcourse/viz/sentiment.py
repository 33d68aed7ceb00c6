"""Several sentiment classifiers side by side on a sentence the reader types.

- ``sentiment_bars_html(probabilities)``: one horizontal bar per classifier, its
  probability that the sentence is positive (HTML and CSS only, no image, no JavaScript);
- ``sentiment_panel(scorers, sentence)``: a text box over those bars; typing a new
  sentence scores it again with every classifier. It is drawn at creation, so a saved
  page shows the starting sentence; a note above it says that reacting needs a kernel.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets

from llmcourse.viz.sampling import note_html

POSITIVE, NEGATIVE = "#15803d", "#b91c1c"  # green above one half, red below

LIVE_NOTE = (
    "Needs a running kernel to react: in a live notebook the bars follow the sentence you type; "
    "on a saved page they show the starting sentence, scored when the page was built."
)


def _check_probability(name: str, p: float) -> float:
    p = float(p)
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"the probability of {name!r} must lie in [0, 1], got {p!r}")
    return p


def sentiment_bars_html(probabilities: Mapping[str, float], sentence: str | None = None) -> str:
    """An HTML bar chart: for each classifier, its probability that the sentence is positive.

    Introduced in: chapter 8, Fine-tuning.
    """
    rows = []
    for name, p in probabilities.items():
        p = _check_probability(name, p)
        colour = POSITIVE if p >= 0.5 else NEGATIVE
        rows.append(
            '<div style="display:flex;align-items:center;gap:0.6em;margin:2px 0">'
            f'<span style="width:16em;text-align:right">{html.escape(name)}</span>'
            '<span style="display:inline-block;width:20em;height:0.9em;background:#e5e7eb;position:relative">'
            f'<span style="position:absolute;left:0;top:0;bottom:0;width:{100 * p:.1f}%;background:{colour}"></span>'
            '<span style="position:absolute;left:50%;top:-2px;bottom:-2px;border-left:1px dashed #374151"></span>'
            f'</span><span style="font-family:monospace">{p:.3f}</span></div>'
        )
    head = f"<p><em>{html.escape(sentence)}</em></p>" if sentence is not None else ""
    caption = '<p style="color:#4b5563">probability of "positive"; the dashed line is one half</p>'
    return f"<div>{head}{''.join(rows)}{caption}</div>"


class SentimentPanel(widgets.VBox):
    """A sentence box over one bar per classifier. Introduced in: chapter 8, Fine-tuning."""

    def __init__(self, scorers: Mapping[str, Callable[[str], float]], sentence: str, note: str | None = LIVE_NOTE):
        if not scorers:
            raise ValueError("scorers must name at least one classifier")
        self.scorers = dict(scorers)
        self.note = widgets.HTML(value=note_html(note) if note else "")
        self.sentence = widgets.Text(value=sentence, description="Sentence", continuous_update=False,
                                     layout=widgets.Layout(width="95%"))
        self.output = widgets.HTML(value=self.render())  # drawn now: a saved page shows it
        self.sentence.observe(self._refresh, names="value")
        children = [self.sentence, self.output]
        super().__init__([self.note, *children] if note else children)

    def probabilities(self) -> dict[str, float]:
        """Each classifier's probability that the current sentence is positive."""
        return {name: float(score(self.sentence.value)) for name, score in self.scorers.items()}

    def render(self) -> str:
        if not self.sentence.value.strip():
            return "<pre>Type a sentence.</pre>"
        return sentiment_bars_html(self.probabilities(), self.sentence.value)

    def _refresh(self, _change: Any = None) -> None:
        self.output.value = self.render()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Viewers without widget support fall back to the static HTML.
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle.setdefault("text/html", self.note.value + self.output.value)
        return bundle


def sentiment_panel(scorers: Mapping[str, Callable[[str], float]], sentence: str,
                    note: str | None = LIVE_NOTE) -> SentimentPanel:
    """A widget: type a sentence, see every classifier's probability that it is positive.

    ``scorers`` maps a name to a function from a sentence to a probability in [0, 1].
    Introduced in: chapter 8, Fine-tuning.
    """
    return SentimentPanel(scorers, sentence, note)


__all__ = ["SentimentPanel", "sentiment_bars_html", "sentiment_panel"]
