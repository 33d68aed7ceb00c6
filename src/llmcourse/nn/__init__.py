"""Building blocks of a transformer: attention, positions, blocks.

- :mod:`llmcourse.nn.positional`: sinusoidal, learned and rotary positions
  (chapter: Embeddings and positional encoding);
- :mod:`llmcourse.nn.attention`: scaled dot-product attention (reference and fused),
  masks, multi-head attention, the key/value cache (chapter: Attention);
- :mod:`llmcourse.nn.blocks`: feed-forward network and the transformer block,
  pre-norm or post-norm (chapter: The transformer).
"""

from llmcourse.nn.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    fused_attention,
    padding_mask,
    scaled_dot_product_attention,
)
from llmcourse.nn.blocks import BlockOutput, FeedForward, TransformerBlock, init_weights
from llmcourse.nn.positional import (
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    apply_rope,
    rope_angles,
    sinusoidal_encoding,
)

__all__ = [
    "BlockOutput",
    "FeedForward",
    "KVCache",
    "LearnedPositions",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "TransformerBlock",
    "apply_rope",
    "causal_mask",
    "combine_masks",
    "fused_attention",
    "init_weights",
    "padding_mask",
    "rope_angles",
    "scaled_dot_product_attention",
    "sinusoidal_encoding",
]
