"""Pretraining: the tokenized corpus, batches, objectives, the training loop, checkpoints.

- ``corpus``       the IMDB reviews as one cached stream of BPE token ids
- ``batches``      causal-LM windows and masked-LM corruption
- ``objectives``   ``CausalLM`` (GPT), ``MaskedLM`` (BERT), ``Classification`` (fine-tuning)
- ``optim``        AdamW with decay on matrices only; warm-up then cosine
- ``trainer``      ``TrainConfig`` and ``Trainer``: the loop, evaluation, checkpoints
- ``checkpoint``   atomic checkpoint files
- ``distributed``  torchrun and DistributedDataParallel
- ``presets``      ready-made CPU and GPU pretraining recipes
- ``course``       the course GPT: trained once by ``python -m llmcourse.training.course``, committed in ``llmcourse/weights/``

Introduced in: the Pretraining chapter.
"""

from llmcourse.training.batches import causal_lm_batch, mask_tokens, mlm_batch
from llmcourse.training.checkpoint import load_checkpoint, save_checkpoint
from llmcourse.training.corpus import cache_dir, imdb_tokenizer, imdb_tokens
from llmcourse.training.objectives import CausalLM, Classification, MaskedLM
from llmcourse.training.optim import lr_at, make_optimizer
from llmcourse.training.trainer import History, TrainConfig, Trainer, model_from_checkpoint

__all__ = [
    "CausalLM",
    "Classification",
    "History",
    "MaskedLM",
    "TrainConfig",
    "Trainer",
    "cache_dir",
    "causal_lm_batch",
    "imdb_tokenizer",
    "imdb_tokens",
    "load_checkpoint",
    "lr_at",
    "make_optimizer",
    "mask_tokens",
    "mlm_batch",
    "model_from_checkpoint",
    "save_checkpoint",
]
