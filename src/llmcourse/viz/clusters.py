"""A cluster explorer: the 2-D map of sentence vectors, and one cluster's keywords and sentences.

``cluster_explorer(coords, labels, keywords, sentences)`` is a widget with a
drop-down of clusters. For the chosen cluster it draws the map with that
cluster's points highlighted (a PNG inside the widget's HTML), its keywords and
its most representative sentences. It is filled in at creation, so a saved page
(the built book) shows the first cluster without a running kernel; a note drawn
with it says that choosing another cluster needs one.

Introduced in: chapter 9, Interpreting embeddings.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from llmcourse.viz.sampling import note_html

LIVE_NOTE = (
    "Needs a running kernel to react: in a live notebook the map and the lists follow the chosen "
    "cluster; on a saved page they show the first cluster, drawn when the page was built."
)
OUTLIER = -1  # the label HDBSCAN and DBSCAN give to points in no cluster


def map_png(coords: np.ndarray, labels: np.ndarray, chosen: int, title: str = "") -> str:
    """The (N, 2) map as a base64 PNG: every cluster in light colours, ``chosen`` in dark red on top."""
    fig = Figure(figsize=(5.2, 4.0), dpi=90)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab20"]
    for k in np.unique(labels):
        pts = coords[labels == k]
        colour = "#d1d5db" if k == OUTLIER else cmap(int(k) % 20)
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color=colour, alpha=0.35, linewidths=0)
    pts = coords[labels == chosen]
    ax.scatter(pts[:, 0], pts[:, 1], s=9, color="#991b1b", linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class ClusterExplorer(widgets.VBox):
    """A drop-down of clusters over the map, the chosen cluster's keywords and sentences.

    Build it with :func:`cluster_explorer`. Introduced in: chapter 9, Interpreting embeddings.
    """

    def __init__(
        self,
        coords: np.ndarray,
        labels: np.ndarray,
        keywords: Mapping[int, Sequence[str]],
        sentences: Mapping[int, Sequence[str]],
        note: str | None = LIVE_NOTE,
    ):
        coords, labels = np.asarray(coords, dtype=float), np.asarray(labels)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(labels):
            raise ValueError(f"coords must be (N, 2) with one label per row; got {coords.shape} and {labels.shape}")
        missing = sorted(set(keywords) - set(labels.tolist()))
        if missing:
            raise ValueError(f"keywords has clusters that no point belongs to: {missing}")
        self.coords, self.labels = coords, labels
        self.keywords, self.sentences = dict(keywords), dict(sentences)
        options = [(f"cluster {k} ({int((labels == k).sum())} sentences): {', '.join(self.keywords[k][:3])}", k)
                   for k in sorted(self.keywords)]
        self.choice = widgets.Dropdown(options=options, value=options[0][1], description="cluster",
                                       layout=widgets.Layout(width="95%"))
        self.note = widgets.HTML(value=note_html(note) if note else "")
        self.output = widgets.HTML(value=self.render())  # drawn now, so a saved page shows a cluster
        self.choice.observe(lambda _change: self._refresh(), names="value")
        super().__init__([self.note, self.choice, self.output] if note else [self.choice, self.output])

    def render(self) -> str:
        """The chosen cluster's map, keywords and sentences as HTML."""
        k = self.choice.value
        png = map_png(self.coords, self.labels, k, f"cluster {k} in dark red")
        words = ", ".join(html.escape(w) for w in self.keywords[k])
        items = "".join(f"<li>{html.escape(s)}</li>" for s in self.sentences.get(k, ()))
        return (
            '<div style="display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start">'
            f'<img alt="map of the sentence vectors, cluster {k} highlighted" '
            f'src="data:image/png;base64,{png}" style="max-width:100%">'
            f'<div style="flex:1;min-width:16em"><p><b>keywords:</b> {words}</p>'
            f"<p><b>closest to the centre:</b></p><ol>{items}</ol></div></div>"
        )

    def _refresh(self) -> None:
        self.output.value = self.render()

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # viewers without widgets get the static HTML
            bundle.setdefault("text/html", self.note.value + self.output.value)
        return bundle


def cluster_explorer(
    coords, labels, keywords: Mapping[int, Sequence[str]], sentences: Mapping[int, Sequence[str]],
    note: str | None = LIVE_NOTE,
) -> ClusterExplorer:
    """A widget to browse clusters: ``coords`` (N, 2) and ``labels`` (N,), keywords and sentences per cluster.

    Introduced in: chapter 9, Interpreting embeddings.
    """
    return ClusterExplorer(coords, labels, keywords, sentences, note)


__all__ = ["ClusterExplorer", "cluster_explorer", "map_png"]
