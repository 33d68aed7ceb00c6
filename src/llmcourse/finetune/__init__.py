"""Fine-tuning: adapt a pretrained model to a task.

- ``pooling``      token vectors -> a sentence vector: mean (padding ignored) or [CLS]
- ``heads``        ``BertClassifier``; ``freeze``, ``unfreeze_last``, ``count_trainable``
- ``data``         ``LabelledSentences``: padded ids + labels for the ``Trainer``'s ``Classification`` objective
- ``cached``       train only the top of a frozen encoder on its stored lower-layer states
- ``lora``         ``LoRALinear`` and ``add_lora``, written from scratch; merge and unmerge
- ``regimes``      ``Regime`` and ``fine_tune``: each regime trained by the ``Trainer``, cached by a hash
                   (``cached_arrays`` caches measurements the same way)
- ``instruction``  a prompt template and batches whose loss covers the response only
- ``tasks``        checkable instruction tasks from sentences, an ``InstructionLM`` objective, exact match
- ``dpo``          the DPO loss against a frozen reference model
- ``preference``   pairs of a GPT's own continuations ranked by a reward model, a ``DPO`` objective, KL
- ``metrics``      ROC-AUC, accuracy, macro-F1 (scikit-learn) with bootstrap intervals (SciPy)
- ``sentiment``    chapter 8's classifier (head + last 2 blocks) for the chapters that use one

Introduced in: chapter 8, Fine-tuning.
"""

from llmcourse.finetune.cached import CachedClassification, CachedStates, TopClassifier, cached_scores, frozen_states
from llmcourse.finetune.data import LabelledSentences, check_labels, encode_sentences
from llmcourse.finetune.dpo import DPOLoss, dpo_loss, preference_loss, sequence_logprob
from llmcourse.finetune.heads import BertClassifier, count_parameters, count_trainable, freeze, unfreeze_last
from llmcourse.finetune.instruction import InstructionExample, encode_example, instruction_batch
from llmcourse.finetune.lora import LoRALinear, add_lora, lora_layers, merge_lora, unmerge_lora
from llmcourse.finetune.metrics import (
    Estimate,
    accuracy,
    bootstrap_interval,
    classification_report,
    macro_f1,
    paired_difference,
    roc_auc,
)
from llmcourse.finetune.pooling import cls_pool, mean_pool, pool
from llmcourse.finetune.regimes import FineTuned, Regime, cached_arrays, fine_tune, sentence_scores

__all__ = [
    "BertClassifier",
    "CachedClassification",
    "CachedStates",
    "DPOLoss",
    "Estimate",
    "FineTuned",
    "InstructionExample",
    "LabelledSentences",
    "LoRALinear",
    "Regime",
    "TopClassifier",
    "accuracy",
    "add_lora",
    "bootstrap_interval",
    "cached_arrays",
    "cached_scores",
    "check_labels",
    "classification_report",
    "cls_pool",
    "count_parameters",
    "count_trainable",
    "dpo_loss",
    "encode_example",
    "encode_sentences",
    "fine_tune",
    "freeze",
    "frozen_states",
    "instruction_batch",
    "lora_layers",
    "macro_f1",
    "mean_pool",
    "paired_difference",
    "merge_lora",
    "pool",
    "preference_loss",
    "roc_auc",
    "sentence_scores",
    "sequence_logprob",
    "unfreeze_last",
]
