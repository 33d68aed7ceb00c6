"""Figures and widgets for the book.

- ``show_tokens``, ``tokens_html``, ``token_pieces``, ``tokenizer_playground``:
  tokens in colour, and a playground to compare tokenizers (the Tokenization chapter).
"""

from llmcourse.viz.tokens import (
    TokenizerPlayground,
    TokenPiece,
    show_tokens,
    token_pieces,
    tokenizer_playground,
    tokens_html,
)

__all__ = [
    "TokenPiece",
    "TokenizerPlayground",
    "show_tokens",
    "token_pieces",
    "tokenizer_playground",
    "tokens_html",
]
