"""Figures and widgets for the book.

- ``show_tokens``, ``tokens_html``, ``token_pieces``, ``tokenizer_playground``:
  tokens in colour, and a playground to compare tokenizers (the Tokenization chapter).
- ``head_view``, ``model_view``: bertviz's attention views, offline (the Attention chapter).
- ``plot_loss_curves``: training and validation loss per step (the Pretraining chapter).
- ``plot_next_token_distribution``, ``next_token_view``, ``sampling_panel``: how temperature,
  top-k and top-p reshape a model's next-token distribution (the Generation chapter).
- ``sentiment_panel``, ``sentiment_bars_html``: several sentiment classifiers on a sentence the
  reader types (the Fine-tuning chapter).
- ``cluster_explorer``: clusters of sentence embeddings on a map (the Interpreting embeddings chapter).
"""

from llmcourse.viz.attention_view import head_view, model_view
from llmcourse.viz.clusters import ClusterExplorer, cluster_explorer
from llmcourse.viz.sampling import (
    NextTokenView,
    SamplingPanel,
    next_token_html,
    next_token_logits,
    next_token_view,
    plot_next_token_distribution,
    sampling_panel,
)
from llmcourse.viz.sentiment import SentimentPanel, sentiment_bars_html, sentiment_panel
from llmcourse.viz.tokens import (
    TokenizerPlayground,
    TokenPiece,
    show_tokens,
    token_pieces,
    tokenizer_playground,
    tokens_html,
)
from llmcourse.viz.training import plot_loss_curves

__all__ = [
    "ClusterExplorer",
    "NextTokenView",
    "SamplingPanel",
    "SentimentPanel",
    "TokenPiece",
    "TokenizerPlayground",
    "cluster_explorer",
    "head_view",
    "model_view",
    "next_token_html",
    "next_token_logits",
    "next_token_view",
    "plot_loss_curves",
    "plot_next_token_distribution",
    "sampling_panel",
    "sentiment_bars_html",
    "sentiment_panel",
    "show_tokens",
    "token_pieces",
    "tokenizer_playground",
    "tokens_html",
]
