"""The interface every tokenizer of the course shares.

A tokenizer turns text into a list of integer ids and back. Each subclass adds
one idea: :class:`~llmcourse.tokenizers.CharTokenizer` (one id per character),
:class:`~llmcourse.tokenizers.BPETokenizer` (learned merges of UTF-8 bytes) and
:class:`~llmcourse.tokenizers.WordPieceTokenizer` (BERT's greedy longest match).

Tokenizers are saved as human-readable JSON: one key per line, and lists (merges,
vocabularies) with one entry per line, so that a saved file can be read and
diffed.

Introduced in: the Tokenization chapter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import regex

FORMAT = "llmcourse-tokenizer"
FORMAT_VERSION = 1
ALLOWED_SPECIAL = ("all", "none")

T = TypeVar("T", bound="Tokenizer")


class Tokenizer:
    """Base class: text -> ids (:meth:`encode`) and ids -> text (:meth:`decode`).

    Subclasses implement ``encode``, ``decode``, ``vocab_size`` and the two
    (de)serialisation hooks ``_state`` and ``_from_state``; they set
    ``special_tokens``, a dict from special-token string to id.

    Introduced in: the Tokenization chapter.
    """

    special_tokens: dict[str, int]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a list of token ids."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids: every id is in ``range(vocab_size)``."""
        raise NotImplementedError

    def tokens(self, text: str) -> list[str]:
        """One display string per token of ``encode(text)`` (for coloured-token views).

        Introduced in: the Tokenization chapter.
        """
        return [self.decode([i]) for i in self.encode(text)]

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to ``path`` as human-readable JSON.

        Introduced in: the Tokenization chapter.
        """
        Path(path).write_text(self.to_json(), encoding="utf-8")

    def to_json(self) -> str:
        """The text :meth:`save` writes: equal tokenizers give equal text (caches hash it).

        Introduced in: the Pretraining chapter (the tokenized-corpus cache).
        """
        header = {"format": FORMAT, "version": FORMAT_VERSION, "type": type(self).__name__}
        return _to_json({**header, **self._state()})

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Read a tokenizer written by :meth:`save`.

        ``Tokenizer.load`` returns whichever subclass the file holds;
        ``BPETokenizer.load`` insists on a BPE file.

        Introduced in: the Tokenization chapter.
        """
        return cls.from_json(Path(path).read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def from_json(cls: type[T], text: str, source: str = "the text") -> T:
        """The tokenizer that :meth:`to_json` wrote as ``text`` (``source`` names it in errors).

        Introduced in: the Pretraining chapter.
        """
        state = json.loads(text)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{source} is not a saved llmcourse tokenizer (no \"format\": {FORMAT!r})")
        if state.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source} has format version {state.get('version')!r}; this code reads {FORMAT_VERSION}")
        kind = _subclasses().get(state.get("type"))
        if kind is None or not issubclass(kind, cls):
            raise ValueError(f"{source} holds a {state.get('type')!r}, not a {cls.__name__}")
        return kind._from_state(state)

    def _state(self) -> dict[str, Any]:
        """Everything needed to rebuild the tokenizer, as JSON-ready values."""
        raise NotImplementedError

    @classmethod
    def _from_state(cls: type[T], state: dict[str, Any]) -> T:
        """Rebuild a tokenizer from the dict written by :meth:`_state`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        specials = f", special_tokens={len(self.special_tokens)}" if self.special_tokens else ""
        return f"{type(self).__name__}(vocab_size={self.vocab_size}{specials})"


# ---------------------------------------------------------------------------
# functions shared by the subclasses


def as_documents(text: str | Iterable[str]) -> list[str]:
    """A training text as a list of documents: a str is one document.

    Raises ``TypeError`` with the offending position for anything but str.

    Introduced in: the Tokenization chapter.
    """
    if isinstance(text, str):
        return [text]
    if isinstance(text, (bytes, bytearray)) or not isinstance(text, Iterable):
        raise TypeError(f"training text must be a str or an iterable of str, got {type(text).__name__}")
    documents = list(text)
    for k, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"training documents must be str; document {k} is a {type(doc).__name__}")
    return documents


def check_text(text: object) -> None:
    """Raise ``TypeError`` unless ``text`` is a str (a clear message beats a deep traceback).

    Introduced in: the Tokenization chapter.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}")


def check_special_tokens(special_tokens: Iterable[str] | None) -> list[str]:
    """Validate a list of special-token strings: non-empty, distinct str.

    Introduced in: the Tokenization chapter.
    """
    if special_tokens is None:
        return []
    if isinstance(special_tokens, str):
        raise TypeError("special_tokens must be a sequence of strings, e.g. ['<|endoftext|>'], not one string")
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special tokens must be distinct, got {specials}")
    return specials


def special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """A pattern matching any special token, longest first (so '<|a|>x' beats '<|a|>').

    Introduced in: the Tokenization chapter.
    """
    specials = sorted(special_tokens, key=len, reverse=True)
    if not specials:
        return None
    return regex.compile("|".join(regex.escape(s) for s in specials))


def split_on_specials(
    text: str, splitter: regex.Pattern | None, allowed_special: str
) -> list[tuple[str, bool]]:
    """Cut ``text`` into (piece, is_special) pairs; specials are only cut out when allowed.

    ``allowed_special="all"`` recognises every special token in the text;
    ``"none"`` treats the text as plain text.

    Introduced in: the Tokenization chapter.
    """
    if allowed_special not in ALLOWED_SPECIAL:
        raise ValueError(f"allowed_special must be 'all' or 'none', got {allowed_special!r}")
    if splitter is None or allowed_special == "none":
        return [(text, False)] if text else []
    pieces: list[tuple[str, bool]] = []
    start = 0
    for match in splitter.finditer(text):
        if match.start() > start:
            pieces.append((text[start : match.start()], False))
        pieces.append((match.group(), True))
        start = match.end()
    if start < len(text):
        pieces.append((text[start:], False))
    return pieces


def _subclasses() -> dict[str, type[Tokenizer]]:
    """Every Tokenizer subclass by class name (for :meth:`Tokenizer.load`)."""
    found: dict[str, type[Tokenizer]] = {}
    todo = list(Tokenizer.__subclasses__())
    while todo:
        kind = todo.pop()
        found[kind.__name__] = kind
        todo.extend(kind.__subclasses__())
    return found


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _compact(value: Any) -> str:
    """One-line JSON; lone surrogates (legal in a Python str) written as \\uXXXX escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _to_json(state: dict[str, Any]) -> str:
    """JSON with one key per line and one list entry per line."""
    lines = []
    for key, value in state.items():
        if isinstance(value, list) and value:
            entries = ",\n".join("    " + _compact(v) for v in value)
            lines.append(f"  {_compact(key)}: [\n{entries}\n  ]")
        else:
            lines.append(f"  {_compact(key)}: {_compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
