"""The simplest tokenizer: one id per character (Unicode code point).

Training just collects the characters of the text and sorts them by code
point: ids ``0 .. n-1`` are those characters, id ``n`` is ``"<unk>"`` (any
character not seen in training), and the special tokens, if any, follow.

Introduced in: the Tokenization chapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from llmcourse.tokenizers.base import (
    Tokenizer,
    as_documents,
    check_special_tokens,
    check_text,
    special_splitter,
    split_on_specials,
)

UNK_TOKEN = "<unk>"


class CharTokenizer(Tokenizer):
    """One token per character; unseen characters map to ``"<unk>"``.

    ``decode(encode(s)) == s`` whenever every character of ``s`` was seen in
    training (an unseen character comes back as the text ``"<unk>"``).

    Introduced in: the Tokenization chapter.
    """

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] | None = None) -> None:
        """Ids ``0 .. len(chars)-1`` for ``chars`` (in order), then ``"<unk>"``, then the specials."""
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("chars must be single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct")
        specials = [s for s in check_special_tokens(special_tokens) if s != UNK_TOKEN]
        self.chars = chars
        self.unk_id = len(chars)
        self.special_tokens = {s: self.unk_id + 1 + k for k, s in enumerate(specials)}
        self.special_tokens[UNK_TOKEN] = self.unk_id
        self.vocab: dict[int, str] = dict(enumerate(chars)) | {i: s for s, i in self.special_tokens.items()}
        self._stoi = {c: i for i, c in enumerate(chars)}
        self._splitter = special_splitter(self.special_tokens)

    @classmethod
    def train(cls, text: str | Iterable[str], special_tokens: Sequence[str] | None = None) -> CharTokenizer:
        """Vocabulary = the sorted set of characters in ``text`` (a str or an iterable of str).

        Occurrences of the special tokens in ``text`` are not counted as characters.

        Introduced in: the Tokenization chapter.
        """
        specials = check_special_tokens(special_tokens)
        splitter = special_splitter(specials)
        seen: set[str] = set()
        for doc in as_documents(text):
            for piece, is_special in split_on_specials(doc, splitter, "all"):
                if not is_special:
                    seen.update(piece)
        return cls(sorted(seen), specials)

    @property
    def vocab_size(self) -> int:
        """Number of ids: characters + ``"<unk>"`` + special tokens."""
        return len(self.vocab)

    def encode(self, text: str, allowed_special: str = "all") -> list[int]:
        """One id per character; special tokens in the text become their id if ``allowed_special="all"``.

        Introduced in: the Tokenization chapter.
        """
        check_text(text)
        ids: list[int] = []
        for piece, is_special in split_on_specials(text, self._splitter, allowed_special):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                ids.extend(self._stoi.get(c, self.unk_id) for c in piece)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Concatenate the characters (and special-token texts) of ``ids``.

        Introduced in: the Tokenization chapter.
        """
        try:
            return "".join(self.vocab[int(i)] for i in ids)
        except KeyError as err:
            raise ValueError(f"unknown token id {err.args[0]}; ids run from 0 to {self.vocab_size - 1}") from None

    def _state(self) -> dict[str, Any]:
        specials = sorted((i, s) for s, i in self.special_tokens.items() if s != UNK_TOKEN)
        return {"special_tokens": [s for _, s in specials], "chars": self.chars}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        return cls(state["chars"], state["special_tokens"])
