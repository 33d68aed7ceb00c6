"""Figures and widgets for the book.

- ``show_tokens``, ``tokens_html``, ``token_pieces``, ``tokenizer_playground``:
  tokens in colour, and a playground to compare tokenizers (the Tokenization chapter).
- ``head_view``, ``model_view``: bertviz's attention views, offline (the Attention chapter).
"""

from llmcourse.viz.attention_view import head_view, model_view
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
    "head_view",
    "model_view",
    "show_tokens",
    "token_pieces",
    "tokenizer_playground",
    "tokens_html",
]
