"""Text <-> bytes conversions that never lose a character.

Byte-level tokenizers work on the UTF-8 bytes of a string. Plain
``text.encode("utf-8")`` refuses lone surrogates (``"\\ud800"``), which a
Python ``str`` may hold, and plain ``data.decode("utf-8")`` refuses invalid byte
sequences, which a model may produce by emitting arbitrary token ids. The rule:

- encode with ``"surrogatepass"``: a lone surrogate becomes its 3-byte
  generalized UTF-8 form (``ED A0 80`` for ``"\\ud800"``);
- decode with the ``"llmcourse-surrogates"`` error handler: such a 3-byte form
  turns back into the surrogate, and any other invalid byte sequence becomes
  U+FFFD, exactly as ``errors="replace"`` would.

So ``bytes_to_text(text_to_bytes(s)) == s`` for every Python string ``s``.

Introduced in: the Tokenization chapter.
"""

from __future__ import annotations

import codecs

ERROR_HANDLER = "llmcourse-surrogates"


def text_to_bytes(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates become their 3-byte form.

    Introduced in: the Tokenization chapter.
    """
    return text.encode("utf-8", "surrogatepass")


def bytes_to_text(data: bytes) -> str:
    """Decode UTF-8 bytes: surrogate forms back to surrogates, other bad bytes to U+FFFD.

    Introduced in: the Tokenization chapter.
    """
    _register_error_handler()
    return data.decode("utf-8", ERROR_HANDLER)


def _is_surrogate_form(seq: bytes) -> bool:
    """True for the 3-byte generalized UTF-8 form of U+D800..U+DFFF: ED [A0-BF] [80-BF]."""
    return len(seq) == 3 and seq[0] == 0xED and 0xA0 <= seq[1] <= 0xBF and 0x80 <= seq[2] <= 0xBF


def _restore_surrogate_or_replace(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: see the module docstring."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    seq = err.object[err.start : err.start + 3]
    if _is_surrogate_form(seq):
        return bytes(seq).decode("utf-8", "surrogatepass"), err.start + 3
    return "\ufffd", err.end


def _register_error_handler() -> None:
    """Register the codec error handler the first time it is needed (idempotent)."""
    try:
        codecs.lookup_error(ERROR_HANDLER)
    except LookupError:
        codecs.register_error(ERROR_HANDLER, _restore_surrogate_or_replace)
