"""The cluster explorer of chapter 9: drawn at creation, escapes text, follows the chosen cluster."""

from __future__ import annotations

import numpy as np
import pytest

from llmcourse.viz import cluster_explorer
from llmcourse.viz.clusters import LIVE_NOTE


def _explorer(**kwargs):
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(60, 2))
    labels = np.repeat([-1, 0, 1], 20)
    keywords = {0: ["comedy", "funny", "laughs"], 1: ["documentary", "subject", "<b>bold</b>"]}
    sentences = {0: ["a very funny film"], 1: ["<script>alert(1)</script> a film about films"]}
    return cluster_explorer(coords, labels, keywords, sentences, **kwargs)


def test_drawn_at_creation_with_a_note_and_the_first_cluster():
    panel = _explorer()
    assert panel.choice.value == 0
    page = panel.output.value
    assert "comedy, funny, laughs" in page and "a very funny film" in page
    assert 'src="data:image/png;base64,' in page
    assert "running kernel" in panel.note.value and panel.children[0] is panel.note
    assert LIVE_NOTE.split(":")[0] in panel.note.value


def test_choosing_a_cluster_redraws_and_escapes_text():
    panel = _explorer()
    first = panel.output.value
    panel.choice.value = 1
    page = panel.output.value
    assert page != first and "documentary" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>bold</b>" not in page
    assert [value for _, value in panel.choice.options] == [0, 1]  # outliers (-1) are not a cluster to pick


def test_without_note():
    panel = _explorer(note=None)
    assert panel.children == (panel.choice, panel.output)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="coords"):
        cluster_explorer(np.zeros((5, 3)), np.zeros(5, int), {0: ["a"]}, {0: []})
    with pytest.raises(ValueError, match="keywords"):
        cluster_explorer(np.zeros((5, 2)), np.zeros(5, int), {0: ["a"], 7: ["b"]}, {})
