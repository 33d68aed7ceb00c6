"""Chapter 8's sentiment classifier, ready for the chapters that use one.

The instruction and preference tuning of the course GPT uses a sentiment
classifier as its reward model, and the Ethics chapter tests one for bias and
calibration. Both take the regime chapter 8 trains as "head + last 2 blocks":
a head trained on the frozen MiniLM's mean-pooled vectors, then that head with
the encoder's last two blocks, on the Rotten Tomatoes training sentences. The
regimes, data and starting head are the chapter's own, so the weights come
from the same cache entry (see :func:`~llmcourse.finetune.regimes.fine_tune`);
the frozen encoder runs over the sentences only when the cache is empty.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from llmcourse.analysis.embeddings import weights_digest
from llmcourse.data import rotten_tomatoes
from llmcourse.finetune.cached import frozen_states, top_states
from llmcourse.finetune.data import LabelledSentences, encode_sentences
from llmcourse.finetune.heads import BertClassifier
from llmcourse.finetune.regimes import FineTuned, Regime, fine_tune, sentence_scores

MAX_TOKENS = 64  # chapter 8 cuts sentences here
TOP = 2  # blocks the second regime trains
HEAD_ONLY = Regime("head", top_blocks=0, steps=300, lr=3e-3, warmup_steps=20)
LAST_TWO = Regime("last-2", top_blocks=TOP, steps=150, lr=2e-4, warmup_steps=10)


def _make_base() -> BertClassifier:
    from llmcourse.models import from_minilm

    return BertClassifier(from_minilm())


def _encoded(tokenizer) -> dict[str, LabelledSentences]:
    data = {}
    for name in ("train", "validation"):
        split = rotten_tomatoes(name)
        data[name] = encode_sentences(tokenizer, [e.text for e in split], [e.label for e in split],
                                      max_length=MAX_TOKENS)
    return data


def sentiment_classifier() -> tuple[FineTuned, object]:
    """Chapter 8's "head + last 2 blocks" classifier (eval mode) and its WordPiece tokenizer.

    Trained on first use (a few minutes on a CPU), then loaded from the course's cache.

    Introduced in: chapter 8, Fine-tuning.
    """
    from llmcourse.tokenizers import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_minilm()
    data = _encoded(tokenizer)
    base = _make_base().eval()
    base_digest = weights_digest(base.encoder)

    @functools.cache
    def below_top() -> tuple:  # the frozen encoder's states after block 4, for train and validation
        return tuple(frozen_states(base, data[name], k=TOP) for name in ("train", "validation"))

    def last_layer() -> tuple:  # ... and after block 6
        return tuple(top_states(base, states, k=TOP) for states in below_top())

    head = fine_tune(HEAD_ONLY, _make_base, base_digest, data["train"], data["validation"], states=last_layer)
    head_start = {name: w.detach().clone() for name, w in head.model.head.state_dict().items()}
    model = fine_tune(LAST_TWO, _make_base, base_digest, data["train"], data["validation"],
                      states=below_top, head=head_start)
    return model, tokenizer


def positive_probability(model: BertClassifier, tokenizer, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """(N,) the classifier's probability that each text is positive.

    Introduced in: chapter 8, Fine-tuning.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    if len(texts) == 0:
        return np.zeros(0)
    data = encode_sentences(tokenizer, list(texts), [0] * len(texts), max_length=MAX_TOKENS)
    return sentence_scores(model, data, batch_size=batch_size).numpy()


__all__ = ["HEAD_ONLY", "LAST_TWO", "positive_probability", "sentiment_classifier"]
