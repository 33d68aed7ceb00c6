"""Tokens in colour: see exactly how a tokenizer cuts a piece of text.

- ``token_pieces(tokenizer, text)``: the (id, text) pieces a tokenizer turns ``text`` into.
- ``tokens_html(tokenizer, text)``: those pieces as an HTML string, one coloured span
  per token, the id in each span's hover title, then the count and the list of ids.
- ``show_tokens(tokenizer, text)``: the same, ready to display in a notebook.
- ``tokenizer_playground(tokenizers)``: a small widget: type text, pick a tokenizer,
  see the tokens, their ids and how many tokens each tokenizer needs. A note above it
  says that reacting needs a running kernel (a saved page shows the starting text).

Any of the course's tokenizers works: byte-level BPE (pieces come from
``token_bytes``, so a token holding only part of a multi-byte UTF-8 character is
shown as its bytes), WordPiece (pieces come from its vocabulary, ``##`` included)
and the character tokenizer (pieces come from ``decode``).

Introduced in: the Tokenization chapter.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from IPython.display import HTML

# Light backgrounds that stay readable with dark text; neighbours always differ.
PALETTE = (
    "#fde68a",  # amber
    "#a7f3d0",  # green
    "#bfdbfe",  # blue
    "#fbcfe8",  # pink
    "#ddd6fe",  # violet
    "#fed7aa",  # orange
    "#a5f3fc",  # cyan
    "#d9f99d",  # lime
)

DEFAULT_TEXT = "Tokenizers don't read words: they read pieces of words, numbers like 2024, and 🍿."

# Shown above the widget: on a saved page (the built book) nothing reacts to typing.
LIVE_NOTE = (
    "Needs a running kernel to react: in a live notebook the tokens follow your typing and "
    "the menu; on a saved page they show the starting text, tokenized when the page was built."
)


@dataclass(frozen=True)
class TokenPiece:
    """One token of a text: its ``id``, the ``text`` to display and its raw ``data`` bytes (if byte-level).

    ``partial`` is True when the token's bytes are not a whole UTF-8 string, as
    when an emoji's four bytes are split over several tokens.
    """

    id: int
    text: str
    data: bytes | None = None
    partial: bool = False


def _bytes_piece(token_id: int, data: bytes) -> TokenPiece:
    try:
        return TokenPiece(token_id, data.decode("utf-8"), data, False)
    except UnicodeDecodeError:
        # Show the bytes that do not form a character as \xNN escapes.
        return TokenPiece(token_id, data.decode("utf-8", errors="backslashreplace"), data, True)


def token_pieces(tokenizer: Any, text: str) -> list[TokenPiece]:
    """Split ``text`` with ``tokenizer`` and return one ``TokenPiece`` per token id.

    Works with any object that has ``encode(text) -> list[int]``: byte-level
    tokenizers (pieces from ``token_bytes``), WordPiece (pieces from
    ``id_to_token``, so ``##`` and ``[CLS]``/``[SEP]`` show) and anything else,
    such as the character tokenizer (pieces from ``decode([id])``).

    Introduced in: the Tokenization chapter.
    """
    ids = [int(i) for i in tokenizer.encode(text)]
    if callable(getattr(tokenizer, "token_bytes", None)):
        return [_bytes_piece(i, bytes(tokenizer.token_bytes(i))) for i in ids]
    if callable(getattr(tokenizer, "id_to_token", None)):  # a vocabulary of strings, as in WordPiece
        return [TokenPiece(i, str(tokenizer.id_to_token(i))) for i in ids]
    return [TokenPiece(i, tokenizer.decode([i])) for i in ids]


def _visible(text: str) -> str:
    """Escaped HTML for a token's text; a newline shows as ↵ and still breaks the line."""
    return html.escape(text, quote=True).replace("\n", "↵\n").replace("\t", "→\t")


def _span(piece: TokenPiece, position: int) -> str:
    colour = PALETTE[position % len(PALETTE)]
    title = f"id {piece.id}"
    if piece.data is not None:
        title += " · bytes " + (piece.data.hex(" ") or "(none)")
    if piece.partial:
        title += " · part of a UTF-8 character"
    style = f"background:{colour};color:#111;border-radius:3px;padding:1px 0;margin:0 1px 0 0"
    if piece.partial:
        style += ";outline:1px dashed #555"
    body = _visible(piece.text) if piece.text else "∅"
    return (
        f'<span class="llmcourse-token" data-token-id="{piece.id}" '
        f'title="{html.escape(title, quote=True)}" style="{style}">{body}</span>'
    )


def tokens_html(tokenizer: Any, text: str, *, show_ids: bool = True, label: str | None = None) -> str:
    """HTML for ``text`` cut into tokens: one coloured ``<span>`` per token, its id in the hover title.

    With ``show_ids``, a line with the number of tokens and characters and the
    list of ids follows. Every piece of text is HTML-escaped, so ``<script>``
    in the input is shown, never run.

    Introduced in: the Tokenization chapter.
    """
    pieces = token_pieces(tokenizer, text)
    parts = ['<div class="llmcourse-tokens" style="margin:0.3em 0">']
    if label is not None:
        parts.append(f'<div style="font-weight:600;margin-bottom:0.2em">{html.escape(label)}</div>')
    parts.append(
        '<div style="font-family:var(--pst-font-family-monospace, monospace);'
        'line-height:1.9;white-space:pre-wrap;word-break:break-word">'
    )
    parts.extend(_span(p, k) for k, p in enumerate(pieces))
    parts.append("</div>")
    if show_ids:
        n_chars = len(text)
        ratio = f"{n_chars / len(pieces):.2f}" if pieces else "–"
        ids = ", ".join(str(p.id) for p in pieces)
        parts.append(
            '<div style="font-size:0.85em;opacity:0.8;margin-top:0.2em">'
            f"{len(pieces)} tokens · {n_chars} characters · {ratio} characters per token</div>"
            '<div class="llmcourse-token-ids" style="font-family:monospace;font-size:0.85em;'
            f'overflow-wrap:anywhere">[{ids}]</div>'
        )
    parts.append("</div>")
    return "".join(parts)


def show_tokens(
    tokenizer: Any, text: str, *, show_ids: bool = True, label: str | None = None
) -> HTML:
    """Display ``text`` as coloured tokens (hover a token to see its id) in a notebook.

    Returns an ``IPython.display.HTML`` object: leave it as the last line of a
    cell, or pass it to ``display``. The raw string is ``tokens_html(...)``.

    Introduced in: the Tokenization chapter.
    """
    return HTML(tokens_html(tokenizer, text, show_ids=show_ids, label=label))


def _counts_html(tokenizers: Mapping[str, Any], text: str, current: str) -> str:
    rows = []
    for name, tok in tokenizers.items():
        try:
            count = str(len(tok.encode(text)))
        except Exception as err:  # a tokenizer that cannot encode this text says why
            count = f"error: {type(err).__name__}"
        weight = "font-weight:600;" if name == current else ""
        rows.append(
            f'<tr><td style="{weight}padding:0 1em 0 0">{html.escape(name)}</td>'
            f'<td style="{weight}text-align:right">{html.escape(count)}</td></tr>'
        )
    return (
        '<table style="font-size:0.85em;margin:0.4em 0 0 0"><thead><tr>'
        '<th style="text-align:left;padding-right:1em">tokenizer</th><th>tokens</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def playground_html(tokenizers: Mapping[str, Any], name: str, text: str) -> str:
    """What the playground shows for ``text`` under ``tokenizers[name]``, as an HTML string."""
    try:
        body = tokens_html(tokenizers[name], text, label=name)
    except Exception as err:
        body = f"<pre>{html.escape(f'{type(err).__name__}: {err}')}</pre>"
    return body + _counts_html(tokenizers, text, name)


def note_html(note: str) -> str:
    """The playground's note (by default, that it needs a running kernel) as an HTML string."""
    return f'<div class="llmcourse-live-note" style="font-size:0.85em;opacity:0.8">{html.escape(note)}</div>'


class TokenizerPlayground(widgets.VBox):
    """A text box, a tokenizer menu and the coloured tokens, ids and counts, updated as you type.

    Build it with ``tokenizer_playground``. Introduced in: the Tokenization chapter.
    """

    def __init__(
        self, tokenizers: Mapping[str, Any], text: str = DEFAULT_TEXT, rows: int = 3, note: str | None = LIVE_NOTE
    ):
        if not tokenizers:
            raise ValueError("tokenizer_playground needs at least one tokenizer")
        self.tokenizers = dict(tokenizers)
        names = list(self.tokenizers)
        # Says, where the widget is drawn, that reacting needs a running kernel.
        self.note = widgets.HTML(value=note_html(note) if note else "")
        self.text = widgets.Textarea(
            value=text, rows=rows, description="Text", continuous_update=True,
            layout=widgets.Layout(width="95%"),
        )
        self.choice = widgets.Dropdown(options=names, value=names[0], description="Tokenizer")
        # Rendered now, so a saved (non-live) page still shows the tokens.
        self.output = widgets.HTML(value=playground_html(self.tokenizers, names[0], text))
        self.text.observe(self._refresh, names="value")
        self.choice.observe(self._refresh, names="value")
        children = [self.choice, self.text, self.output]
        super().__init__([self.note, *children] if note else children)

    def _refresh(self, _change: Any = None) -> None:
        self.output.value = playground_html(self.tokenizers, self.choice.value, self.text.value)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Viewers without widget support fall back to the static HTML.
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle.setdefault("text/html", self.note.value + self.output.value)
        return bundle


def tokenizer_playground(
    tokenizers: Mapping[str, Any], text: str = DEFAULT_TEXT, *, rows: int = 3, note: str | None = LIVE_NOTE
) -> TokenizerPlayground:
    """A widget to compare tokenizers on your own text.

    ``tokenizers`` maps a display name to a tokenizer (anything ``token_pieces``
    accepts). The widget has a text box, a menu of the tokenizers and an HTML
    panel with the chosen tokenizer's coloured tokens, their ids and the number
    of tokens every tokenizer in the menu needs. The panel updates on every
    change; it is filled in at creation, so a saved page shows ``text`` already
    tokenized even without a running kernel. Above it, ``note`` (``None`` for
    none) says by default that reacting needs a running kernel.

    Introduced in: the Tokenization chapter.
    """
    return TokenizerPlayground(tokenizers, text, rows, note)
