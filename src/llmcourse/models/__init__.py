"""Models built from the same blocks (:mod:`llmcourse.nn`), each with a config dataclass.

- :class:`GPT` / :class:`GPTConfig`: decoder-only, causal, tied embeddings;
- :class:`Bert` / :class:`BertConfig`: encoder-only, with pooler and masked-LM head;
  :func:`from_minilm` loads the real all-MiniLM-L6-v2 weights into it;
- :class:`Seq2Seq` / :class:`Seq2SeqConfig`: encoder-decoder with cross-attention;
- :class:`RNNLM` / :class:`RNNConfig` and :class:`RNNSeq2Seq` / :class:`RNNSeq2SeqConfig`:
  the recurrent models that came before them (Introduction chapter), the
  encoder-decoder with or without additive attention;
- :class:`KneserNeyLM`: a counting n-gram baseline (Pretraining chapter).

Every config has a ``tiny()`` preset for tests and CPU work; every model with
attention can return its attention weights, one tensor per layer.

Introduced in: the Transformer chapter.
"""

from llmcourse.models.bert import Bert, BertConfig, BertOutput, from_minilm, mean_pool
from llmcourse.models.gpt import GPT, GPTConfig, GPTOutput
from llmcourse.models.ngram import KneserNeyLM
from llmcourse.models.rnn import AdditiveAttention, RNNConfig, RNNOutput, RNNSeq2Seq, RNNSeq2SeqConfig, RNNLM
from llmcourse.models.seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqOutput

__all__ = [
    "GPT",
    "RNNLM",
    "AdditiveAttention",
    "Bert",
    "BertConfig",
    "BertOutput",
    "GPTConfig",
    "GPTOutput",
    "KneserNeyLM",
    "RNNConfig",
    "RNNOutput",
    "RNNSeq2Seq",
    "RNNSeq2SeqConfig",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Seq2SeqOutput",
    "from_minilm",
    "mean_pool",
]
