"""Byte-level byte-pair encoding (BPE), as in GPT-2 and GPT-4.

Text is turned into UTF-8 bytes (ids 0..255), so every string can be encoded
and nothing is ever unknown. Training then learns *merges*: it repeatedly
replaces the most frequent adjacent pair of ids by a new id.

Before counting, each document is cut into chunks by a regex (the pre-split
pattern, e.g. GPT-4's, which keeps words, numbers, punctuation and whitespace
apart), so a merge never glues the end of one word to the start of the next.

Introduced in: the Tokenization chapter.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import regex

from llmcourse.tokenizers._bytes import bytes_to_text, text_to_bytes
from llmcourse.tokenizers.base import (
    Tokenizer,
    as_documents,
    check_special_tokens,
    check_text,
    special_splitter,
    split_on_specials,
)

Pair = tuple[int, int]

# The pre-split patterns of GPT-2 and of GPT-4 (cl100k). Compared with GPT-2's, GPT-4's
# matches contractions in any case; lets a word take one leading character that is not
# a letter, digit or line break (not only a space); cuts numbers into groups of at most
# 3 digits, with no leading space; and keeps line breaks apart from other whitespace,
# letting a run of punctuation take the line breaks that follow it.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

CACHE_SIZE = 100_000  # chunk encodings kept in memory (the cache is emptied when full)
CACHE_MAX_CHUNK = 256  # longer chunks are rare; they are not cached


def pair_counts(ids: Sequence[int]) -> dict[Pair, int]:
    """How often each adjacent pair occurs in ``ids``, scanning left to right.

    Overlapping occurrences all count: ``[a, a, a]`` holds the pair ``(a, a)`` twice.

    Introduced in: the Tokenization chapter.
    """
    counts: dict[Pair, int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right, non-overlapping.

    ``merge_pair([a, a, a], (a, a), z) == [z, a]``.

    Introduced in: the Tokenization chapter.
    """
    first, second = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == first and i + 1 < n and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def split_chunks(text: str, pattern: regex.Pattern | None) -> list[str]:
    """Cut ``text`` into the chunks BPE works on; the chunks always join back to ``text``.

    ``pattern=None`` keeps the text as one chunk. Text the pattern does not
    match (possible with a custom pattern) is kept as chunks of its own.

    Introduced in: the Tokenization chapter.
    """
    if pattern is None:
        return [text] if text else []
    if pattern.groups == 0:
        chunks = pattern.findall(text)
        if sum(map(len, chunks)) == len(text):  # the usual case: the matches cover the text
            return chunks
    chunks, start = [], 0
    for match in pattern.finditer(text):
        if match.start() > start:
            chunks.append(text[start : match.start()])
        if match.end() > match.start():
            chunks.append(match.group())
        start = match.end()
    if start < len(text):
        chunks.append(text[start:])
    return chunks


class BPETokenizer(Tokenizer):
    """Byte-level BPE with a regex pre-split and special tokens.

    Ids ``0..255`` are the bytes, ``256, 257, ...`` the merges in the order they
    were learned, and the special tokens come last.

    Introduced in: the Tokenization chapter.
    """

    def __init__(
        self,
        merges: dict[Pair, int] | None = None,
        pattern: str | None = GPT4_SPLIT_PATTERN,
        special_tokens: Sequence[str] | None = None,
    ) -> None:
        """A tokenizer from learned ``merges`` (pair -> new id, in learned order; ids 256, 257, ...)."""
        self.merges: dict[Pair, int] = dict(merges or {})
        self.pattern = pattern
        self.vocab: dict[int, bytes] = _build_vocab(self.merges)
        first_special = len(self.vocab)
        self.special_tokens = {s: first_special + k for k, s in enumerate(check_special_tokens(special_tokens))}
        self.vocab.update((i, text_to_bytes(s)) for s, i in self.special_tokens.items())
        self._compiled = None if pattern is None else regex.compile(pattern)
        self._splitter = special_splitter(self.special_tokens)
        self._cache: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        text: str | Iterable[str],
        vocab_size: int,
        pattern: str | None = GPT4_SPLIT_PATTERN,
        special_tokens: Sequence[str] | None = None,
        verbose: bool = False,
    ) -> BPETokenizer:
        """Learn (at most) ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        ``text`` is a str or an iterable of str (documents); a pair never spans two
        documents, two chunks of the pre-split ``pattern`` (``None``: each document
        is one chunk) or a special token occurring in the text.

        The merge rule: repeatedly merge the most frequent adjacent pair (counts
        summed over all chunks, overlapping occurrences counted as in a plain
        left-to-right scan, so ``"aaa"`` holds ``(a, a)`` twice). Ties go to the
        pair that is smallest as a tuple of ids (first id, then second id). The
        merge replaces occurrences left to right, non-overlapping; new ids are 256,
        257, ...; training stops early if no adjacent pair remains.

        Introduced in: the Tokenization chapter.
        """
        specials = check_special_tokens(special_tokens)
        _check_vocab_size(vocab_size, len(specials))
        documents = as_documents(text)
        compiled = None if pattern is None else regex.compile(pattern)
        chunks = _count_chunks(documents, compiled, special_splitter(specials))
        index = PairIndex([list(text_to_bytes(c)) for c in chunks], list(chunks.values()))
        merges: dict[Pair, int] = {}
        pieces = {i: bytes([i]) for i in range(256)}  # only for the verbose printout
        for new_id in range(256, vocab_size - len(specials)):
            best = index.most_frequent()
            if best is None:
                break
            pair, count = best
            index.merge(pair, new_id)
            merges[pair] = new_id
            pieces[new_id] = pieces[pair[0]] + pieces[pair[1]]
            if verbose:
                n_merges = vocab_size - 256 - len(specials)
                print(f"merge {new_id - 255}/{n_merges}: {pair} -> {new_id} {pieces[new_id]!r} ({count} occurrences)")
        return cls(merges, pattern, specials)

    # ------------------------------------------------------------------ encoding

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens."""
        return len(self.vocab)

    def token_bytes(self, i: int) -> bytes:
        """The raw bytes of token ``i`` (a special token's UTF-8 text).

        Introduced in: the Tokenization chapter.
        """
        try:
            return self.vocab[int(i)]
        except KeyError:
            raise ValueError(f"unknown token id {i}; ids run from 0 to {self.vocab_size - 1}") from None

    def encode(self, text: str, allowed_special: str = "all") -> list[int]:
        """Token ids of ``text``.

        Special tokens are cut out first (``allowed_special="all"``) or treated as
        plain text (``"none"``). Each remaining chunk of the pre-split pattern is
        turned into bytes, and the merges are applied in learned order: the
        lowest-ranked pair present first, all its occurrences, until none applies.

        Introduced in: the Tokenization chapter.
        """
        check_text(text)
        ids: list[int] = []
        for piece, is_special in split_on_specials(text, self._splitter, allowed_special):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                for chunk in split_chunks(piece, self._compiled):
                    ids.extend(self._encode_chunk(chunk))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``: their bytes joined, decoded by the rule of :mod:`llmcourse.tokenizers._bytes`.

        Any sequence of valid ids decodes; bytes that are not valid UTF-8 become U+FFFD.

        Introduced in: the Tokenization chapter.
        """
        return bytes_to_text(b"".join(self.token_bytes(i) for i in ids))

    def tokens(self, text: str) -> list[str]:
        """Each token's bytes decoded on their own (a split character shows as U+FFFD).

        Introduced in: the Tokenization chapter.
        """
        return [self.token_bytes(i).decode("utf-8", errors="replace") for i in self.encode(text)]

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        """The ids of one chunk, remembered in a bounded cache."""
        ids = self._cache.get(chunk)
        if ids is None:
            ids = tuple(self._apply_merges(list(text_to_bytes(chunk))))
            if len(chunk) <= CACHE_MAX_CHUNK:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[chunk] = ids
        return ids

    def _apply_merges(self, ids: list[int]) -> list[int]:
        """Apply the merges to one chunk's byte ids, earliest-learned pair first."""
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, _NEVER))
            if pair not in self.merges:
                break
            ids = merge_pair(ids, pair, self.merges[pair])
        return ids

    # ------------------------------------------------------------------ saving

    def _state(self) -> dict[str, Any]:
        merges = [
            {"pair": list(pair), "id": i, "pieces": [self._show(pair[0]), self._show(pair[1])]}
            for pair, i in self.merges.items()
        ]
        return {"pattern": self.pattern, "special_tokens": self.special_tokens, "merges": merges}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> BPETokenizer:
        merges = {(m["pair"][0], m["pair"][1]): m["id"] for m in state["merges"]}
        specials = sorted(state["special_tokens"], key=state["special_tokens"].get)
        tok = cls(merges, state["pattern"], specials)
        if tok.special_tokens != state["special_tokens"]:
            raise ValueError("special token ids in the file do not follow the merges")
        return tok

    def _show(self, i: int) -> str:
        """A token as readable text, for saved files (not used to load them)."""
        return self.vocab[i].decode("utf-8", errors="backslashreplace")


_NEVER = float("inf")  # the rank of a pair that is not a merge


class PairIndex:
    """Pair counts over a table of distinct chunks ("words"), updated after each merge.

    Training on a large text would be slow if every merge recounted every pair.
    Instead, identical chunks are counted once (a word with a count), and three
    indexes are kept up to date:

    - ``count``: pair -> total occurrences (each word's pairs times its count);
    - ``where``: pair -> the set of words that contain it;
    - ``heap``: a max-heap of ``(-count, pair)``; entries whose count is out of
      date are skipped when they reach the top, so ties pop the smallest pair.

    A merge only touches the words that contain the merged pair: their old pairs
    are subtracted and their new pairs added, which stays exact even for runs
    such as ``aaaa``.

    Introduced in: the Tokenization chapter.
    """

    def __init__(self, words: list[list[int]], counts: list[int]) -> None:
        self.words = words
        self.counts = counts
        self.count: dict[Pair, int] = defaultdict(int)
        self.where: dict[Pair, set[int]] = defaultdict(set)
        for w, word in enumerate(words):
            for pair in zip(word, word[1:]):
                self.count[pair] += counts[w]
                self.where[pair].add(w)
        self.heap = [(-c, pair) for pair, c in self.count.items()]
        heapq.heapify(self.heap)

    def most_frequent(self) -> tuple[Pair, int] | None:
        """The most frequent pair (smallest pair on ties) and its count, or None if no pair is left."""
        while self.heap:
            neg_count, pair = self.heap[0]
            if self.count.get(pair) == -neg_count:
                return pair, -neg_count
            heapq.heappop(self.heap)  # out of date
        return None

    def merge(self, pair: Pair, new_id: int) -> None:
        """Merge ``pair`` into ``new_id`` in every word that holds it, and update the indexes."""
        delta: dict[Pair, int] = defaultdict(int)
        for w in self.where.pop(pair):
            old = self.words[w]
            new = merge_pair(old, pair, new_id)
            self.words[w] = new
            self._reindex(w, old, new, delta)
        for p, d in delta.items():
            if d:
                self._add(p, d)

    def _reindex(self, w: int, old: list[int], new: list[int], delta: dict[Pair, int]) -> None:
        """Record word ``w``'s change from ``old`` to ``new`` in ``where`` and in ``delta``."""
        c = self.counts[w]
        old_pairs = set(zip(old, old[1:]))
        new_pairs = set(zip(new, new[1:]))
        for p in zip(old, old[1:]):
            delta[p] -= c
        for p in zip(new, new[1:]):
            delta[p] += c
        for p in old_pairs - new_pairs:
            words = self.where.get(p)
            if words is not None:
                words.discard(w)
        for p in new_pairs - old_pairs:
            self.where[p].add(w)

    def _add(self, pair: Pair, d: int) -> None:
        """Change ``pair``'s count by ``d`` and push its new count onto the heap."""
        c = self.count.get(pair, 0) + d
        if c > 0:
            self.count[pair] = c
            heapq.heappush(self.heap, (-c, pair))
        else:
            self.count.pop(pair, None)
            self.where.pop(pair, None)


def _count_chunks(
    documents: list[str], pattern: regex.Pattern | None, splitter: regex.Pattern | None
) -> Counter[str]:
    """How often each distinct chunk occurs over all documents (special tokens cut out)."""
    chunks: Counter[str] = Counter()
    for doc in documents:
        for piece, is_special in split_on_specials(doc, splitter, "all"):
            if not is_special:
                chunks.update(split_chunks(piece, pattern))
    return chunks


def _check_vocab_size(vocab_size: int, n_special: int) -> None:
    """Raise a clear error for a vocabulary too small to hold the 256 bytes and the specials."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 256 + n_special:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must hold the 256 byte tokens"
            f" and the {n_special} special token(s), so at least {256 + n_special}"
        )


def _build_vocab(merges: dict[Pair, int]) -> dict[int, bytes]:
    """Bytes of every id: the 256 single bytes, then each merge's two parts joined."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), i in merges.items():
        if i != len(vocab):
            raise ValueError(f"merge {(a, b)} -> {i}: merge ids must be 256, 257, ... in learned order")
        if a not in vocab or b not in vocab:
            raise ValueError(f"merge {(a, b)} -> {i} uses an id not defined before it")
        vocab[i] = vocab[a] + vocab[b]
    return vocab
