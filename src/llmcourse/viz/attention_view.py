"""Attention patterns drawn by bertviz, in a notebook and in the built book, offline.

- ``head_view(attention, tokens, ...)``: one layer at a time, every head's attention
  as lines from each token to the tokens it looks at (bertviz's head view).
- ``model_view(attention, tokens, ...)``: a thumbnail of every head of every layer
  (bertviz's model view).

``attention`` is what ``output_attentions=True`` returns: one tensor per layer, each
``(1, heads, T, T)``; ``tokens`` holds the ``T`` token strings. Other keyword
arguments (``sentence_b_start``, ``layer``, ``heads``, ``include_layers``,
``display_mode``, ...) are bertviz's.

bertviz's HTML loads require.js, d3 and jQuery from cdnjs. Here that HTML is rewritten
so that it needs nothing from another host: the ``<script src>`` of require.js goes,
and the d3 and jQuery files the book serves (``book/vendor/``, written by
``scripts/vendor_js.sh``) are inlined and run as CommonJS modules into one page-wide
object, ``window.llmcourseBertviz``. They never call AMD's ``define`` and never set
``window.$``, so a page that also runs require.js (the ipywidgets embedder, classic
Jupyter) keeps its own modules, and the view works with or without require.js.
bertviz's ``require.config`` is removed and its ``requirejs(["jquery", "d3"], main)``
call is answered by a local function that passes those modules to ``main``.

Introduced in: the Attention chapter.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import bertviz
import torch
from IPython.display import HTML

# src/llmcourse/viz/attention_view.py -> <repository>/book/vendor (the package is installed editable)
VENDOR = Path(__file__).resolve().parents[3] / "book" / "vendor"
LIBRARIES = {"d3": "d3/d3.min.js", "jquery": "jquery/jquery.min.js"}  # module name -> file in VENDOR

# bertviz (html_action="return"): <script src=".../require.min.js"></script> <div ...> <script>view</script>
_BERTVIZ_HTML = re.compile(
    r'\s*<script src="[^"]*"></script>(?P<div>.*?)<script type="text/javascript">(?P<js>.*)</script>\s*', re.S
)
_REQUIRE_CONFIG = re.compile(r"require\.config\(\{.*?\}\);\s*", re.S)

_SCRIPT = """<script type="text/javascript">
(function () {
  // d3 and jQuery run once per page, as CommonJS modules: no AMD define(), no global $
  var libs = window.llmcourseBertviz;
  if (!libs) {
    libs = {};
%(libraries)s
    window.llmcourseBertviz = libs;
  }
  // bertviz's view; its requirejs(["jquery", "d3"], main) gets the modules above
  (function (require, requirejs) {
%(view)s
  })(undefined, function (deps, main) { main(libs.jquery, libs.d3); });
})();
</script>
"""


@functools.cache
def _libraries_js() -> str:
    """d3 and jQuery, each run as a CommonJS module into ``libs[name]``."""
    parts = []
    for name, rel in LIBRARIES.items():
        path = VENDOR / rel
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the views read d3 and jQuery from the repository's book/vendor/ "
                "(run `bash scripts/vendor_js.sh`; install llmcourse from the repository with `pip install -e .`)"
            )
        source = path.read_text(encoding="utf-8")
        parts.append(
            f"    libs[{name!r}] = (function (module) {{ var exports = module.exports, define;\n"
            f"{source}\n    return module.exports; }})({{exports: {{}}}});"
        )
    return "\n".join(parts)


def _script_safe(js: str) -> str:
    """Keep token text such as "</script>" or "<!--" from ending the <script> element early."""
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.I).replace("<!--", "<\\!--")


def _check(attention, tokens) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Validate the inputs; return the layers as CPU tensors and the tokens as a list."""
    if isinstance(attention, torch.Tensor) or not isinstance(attention, Sequence) or not attention:
        raise TypeError(
            "attention must be a non-empty tuple or list with one tensor (1, heads, T, T) per layer, "
            f"as returned with output_attentions=True; got {type(attention).__name__}"
        )
    for i, layer in enumerate(attention):
        shape = tuple(layer.shape) if isinstance(layer, torch.Tensor) else type(layer).__name__
        if not isinstance(layer, torch.Tensor) or layer.dim() != 4 or layer.shape[0] != 1:
            raise ValueError(f"attention[{i}] must be a tensor of shape (1, heads, T, T), got {shape}")
        if layer.shape[2] != layer.shape[3]:
            raise ValueError(f"attention[{i}] has shape {shape}: self-attention is T x T")
        if layer.shape != attention[0].shape:
            raise ValueError(f"attention[{i}] has shape {shape}, attention[0] {tuple(attention[0].shape)}: must match")
    n_positions = attention[0].shape[-1]
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError("tokens must be a list of strings, one per position")
    if len(tokens) != n_positions:
        raise ValueError(f"got {len(tokens)} tokens for attention over {n_positions} positions")
    # float64 rounded to 4 decimals: the numbers in the page's JSON stay short (0.0117, not 0.011732904240489006)
    return tuple(layer.detach().cpu().double().round(decimals=4) for layer in attention), list(tokens)


def _offline_view(view: Callable[..., HTML], attention, tokens, kwargs: dict) -> HTML:
    """Call a bertviz view and make its HTML self-contained (see the module docstring)."""
    if "html_action" in kwargs:
        raise TypeError("html_action is not an argument here: the view is always returned as HTML")
    attention, tokens = _check(attention, tokens)
    match = _BERTVIZ_HTML.fullmatch(view(attention, tokens, html_action="return", **kwargs).data)
    view_js, n_configs = _REQUIRE_CONFIG.subn("", match["js"]) if match else ("", 0)
    if n_configs != 1:
        raise RuntimeError("bertviz returned HTML of an unexpected form (this wrapper follows bertviz 1.4)")
    script = _SCRIPT % {"libraries": _libraries_js(), "view": _script_safe(view_js)}
    return HTML(match["div"].strip() + "\n" + script)


def head_view(attention, tokens, **kwargs) -> HTML:
    """bertviz's head view (one layer, all heads), self-contained HTML that loads nothing.

    ``attention``: one ``(1, heads, T, T)`` tensor per layer; ``tokens``: ``T`` strings;
    ``kwargs``: bertviz's ``sentence_b_start``, ``prettify_tokens``, ``layer``, ``heads``,
    ``include_layers``. A cell ending with ``head_view(...)`` shows the view.

    Introduced in: the Attention chapter.
    """
    return _offline_view(bertviz.head_view, attention, tokens, kwargs)


_MODEL_VIEW_WIDTH = "const DIV_WIDTH = 970;"  # bertviz's fixed width of the model view, in pixels


def model_view(attention, tokens, width: int | None = None, **kwargs) -> HTML:
    """bertviz's model view (every head of every layer), self-contained HTML that loads nothing.

    ``attention``: one ``(1, heads, T, T)`` tensor per layer; ``tokens``: ``T`` strings;
    ``width``: the view's width in pixels (bertviz draws 970; a book page's column is
    about 680), the thumbnails shrink to fit; ``kwargs``: bertviz's ``sentence_b_start``,
    ``prettify_tokens``, ``display_mode`` (``"dark"`` or ``"light"``), ``include_layers``,
    ``include_heads``.

    Introduced in: the Attention chapter.
    """
    view = _offline_view(bertviz.model_view, attention, tokens, kwargs)
    if width is None:
        return view
    if not isinstance(width, int) or isinstance(width, bool) or width < 300:
        raise ValueError(f"width must be a whole number of pixels, at least 300; got {width!r}")
    if view.data.count(_MODEL_VIEW_WIDTH) != 1:
        raise RuntimeError("bertviz's model view has no fixed width to change (this wrapper follows bertviz 1.4)")
    return HTML(view.data.replace(_MODEL_VIEW_WIDTH, f"const DIV_WIDTH = {width};"))
