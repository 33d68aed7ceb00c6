"""From one vector per token to one vector per sentence.

- **mean pooling**: the average of the real tokens' vectors, padding left out
  (how all-MiniLM-L6-v2 makes its sentence embeddings);
- **[CLS] pooling**: the vector at position 0, the ``[CLS]`` token BERT puts in
  front of every input.

Both ignore padding: mean pooling through the mask, [CLS] pooling because
position 0 is never padding (and attention never looks at padded keys).

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from torch import Tensor

from llmcourse.models.bert import mean_pool


def cls_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """(B, T, d) token vectors -> (B, d): the vector of the first token, [CLS].

    Introduced in: chapter 8, Fine-tuning.
    """
    return hidden[:, 0]  # (B, d)


POOLINGS = {"mean": mean_pool, "cls": cls_pool}


def pool(hidden: Tensor, attention_mask: Tensor, how: str = "mean") -> Tensor:
    """(B, T, d) token vectors and a (B, T) mask (1 = token, 0 = padding) -> (B, d) sentence vectors.

    Introduced in: chapter 8, Fine-tuning.
    """
    if how not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {how!r}")
    return POOLINGS[how](hidden, attention_mask)


__all__ = ["POOLINGS", "cls_pool", "mean_pool", "pool"]
