"""Tokenizers: text to integer ids and back.

- :class:`CharTokenizer`: one id per character (the simplest possible scheme).
- :class:`BPETokenizer`: byte-level byte-pair encoding with a regex pre-split and
  special tokens, as in GPT-2 and GPT-4 (``GPT2_SPLIT_PATTERN``, ``GPT4_SPLIT_PATTERN``).
- :class:`WordPieceTokenizer`: BERT's WordPiece, loading the vocabulary of the
  pretrained MiniLM model the course uses.

All share the :class:`Tokenizer` interface: ``encode``, ``decode``, ``vocab_size``,
``tokens``, ``save`` and ``load``.

Introduced in: the Tokenization chapter.
"""

from llmcourse.tokenizers.base import Tokenizer
from llmcourse.tokenizers.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer
from llmcourse.tokenizers.char import CharTokenizer
from llmcourse.tokenizers.wordpiece import WordPieceTokenizer

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "Tokenizer",
    "WordPieceTokenizer",
]
