"""Direct preference optimisation (DPO; Rafailov et al. 2023).

Given a prompt, a preferred continuation y_w and a rejected one y_l, DPO trains
the policy pi directly, with no reward model and no reinforcement learning:

    loss = -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])

where ``ref`` is a frozen copy of the model before preference tuning and the
log-probabilities are sums over the continuation's tokens. ``beta`` sets how far
the policy may move from the reference: the implicit reward of a continuation
is ``beta * (log pi(y) - log ref(y))``.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.training.batches import IGNORE_INDEX


def sequence_logprob(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """(B,) sum of log p(target token) over the positions whose target is not -100.

    ``inputs`` and ``targets`` are (B, T), as made by
    :func:`~llmcourse.finetune.instruction_batch` (prompt and padding masked).

    Introduced in: chapter 8, Fine-tuning.
    """
    logits = model(inputs).logits.float()  # (B, T, V)
    scored = targets != IGNORE_INDEX  # (B, T)
    picked = torch.gather(logits.log_softmax(-1), 2, targets.clamp(min=0)[..., None])[..., 0]  # (B, T)
    return (picked * scored).sum(1)


class DPOLoss(NamedTuple):
    loss: Tensor  # () mean over the pairs
    chosen_reward: Tensor  # (B,) beta * (log pi(y_w) - log ref(y_w))
    rejected_reward: Tensor  # (B,) beta * (log pi(y_l) - log ref(y_l))


def dpo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float = 0.1
) -> DPOLoss:
    """The DPO loss from four (B,) tensors of sequence log-probabilities.

    Introduced in: chapter 8, Fine-tuning.
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    chosen = beta * (policy_chosen - ref_chosen)  # (B,)
    rejected = beta * (policy_rejected - ref_rejected)  # (B,)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return DPOLoss(loss, chosen.detach(), rejected.detach())


def preference_loss(
    policy: nn.Module,
    reference: nn.Module,
    chosen: tuple[Tensor, Tensor],
    rejected: tuple[Tensor, Tensor],
    beta: float = 0.1,
) -> DPOLoss:
    """DPO of ``policy`` against the frozen ``reference`` on (inputs, targets) batches of chosen and rejected.

    The reference runs without gradients, so nothing in it can change.

    Introduced in: chapter 8, Fine-tuning.
    """
    with torch.no_grad():
        ref_chosen = sequence_logprob(reference, *chosen)
        ref_rejected = sequence_logprob(reference, *rejected)
    return dpo_loss(
        sequence_logprob(policy, *chosen), sequence_logprob(policy, *rejected), ref_chosen, ref_rejected, beta
    )
