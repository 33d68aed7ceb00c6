"""Fine-tuning: adapt a pretrained model to a task.

- ``pooling``      token vectors -> a sentence vector: mean (padding ignored) or [CLS]
- ``heads``        ``BertClassifier``; ``freeze``, ``unfreeze_last``, ``count_trainable``
- ``data``         ``LabelledSentences``: padded ids + labels for the ``Trainer``'s ``Classification`` objective
- ``lora``         ``LoRALinear`` and ``add_lora``, written from scratch; merge and unmerge
- ``instruction``  a prompt template and batches whose loss covers the response only
- ``dpo``          the DPO loss against a frozen reference model
- ``metrics``      ROC-AUC, accuracy, macro-F1 (scikit-learn) with bootstrap intervals (SciPy)

Introduced in: chapter 8, Fine-tuning.
"""

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
    roc_auc,
)
from llmcourse.finetune.pooling import cls_pool, mean_pool, pool

__all__ = [
    "BertClassifier",
    "DPOLoss",
    "Estimate",
    "InstructionExample",
    "LabelledSentences",
    "LoRALinear",
    "accuracy",
    "add_lora",
    "bootstrap_interval",
    "check_labels",
    "classification_report",
    "cls_pool",
    "count_parameters",
    "count_trainable",
    "dpo_loss",
    "encode_example",
    "encode_sentences",
    "freeze",
    "instruction_batch",
    "lora_layers",
    "macro_f1",
    "mean_pool",
    "merge_lora",
    "pool",
    "preference_loss",
    "roc_auc",
    "sequence_logprob",
    "unfreeze_last",
]
