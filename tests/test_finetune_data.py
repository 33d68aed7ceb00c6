"""Instruction batches, the DPO loss and the classification metrics.

Independent references: hand-made token ids and targets, the DPO loss computed by hand
from chosen log-probabilities, and scikit-learn's metrics on hand-checkable labels.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from llmcourse.finetune import (
    InstructionExample,
    accuracy,
    bootstrap_interval,
    classification_report,
    dpo_loss,
    encode_example,
    instruction_batch,
    macro_f1,
    preference_loss,
    roc_auc,
    sequence_logprob,
)
from llmcourse.models import GPT, GPTConfig
from llmcourse.tokenizers import CharTokenizer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


# ----------------------------------------------------------------------------- instruction data


def test_prompt_template_with_and_without_input():
    with_input = InstructionExample("Label the sentiment.", "positive", input="a joy to watch")
    assert with_input.prompt() == "### Instruction:\nLabel the sentiment.\n\n### Input:\na joy to watch\n\n### Response:\n"
    assert InstructionExample("Say hi.", "hi").prompt() == "### Instruction:\nSay hi.\n\n### Response:\n"


def test_targets_cover_the_response_only_and_never_the_padding():
    # prompt 11 12 13, response 21 22 + end-of-text 2; a second, shorter example; pad id 0
    inputs, targets = instruction_batch([([11, 12, 13], [21, 22, 2]), ([14], [23, 2])], pad_id=0)
    assert inputs.tolist() == [[11, 12, 13, 21, 22], [14, 23, 0, 0, 0]]
    assert targets.tolist() == [[-100, -100, 21, 22, 2], [23, 2, -100, -100, -100]]
    # position 2 reads the last prompt token (13) and predicts the first response token (21)
    _, everything = instruction_batch([([11, 12, 13], [21, 22, 2]), ([14], [23, 2])], pad_id=0, mask_prompt=False)
    assert everything.tolist() == [[12, 13, 21, 22, 2], [23, 2, -100, -100, -100]]


def test_the_masked_loss_is_the_mean_over_response_tokens():
    inputs, targets = instruction_batch([([5, 6, 7], [8, 9])], pad_id=0)  # scored: 8 (after 7) and 9 (after 8)
    logits = torch.randn(1, inputs.size(1), 12)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    log_p = logits.log_softmax(-1)[0]
    torch.testing.assert_close(loss, -(log_p[2, 8] + log_p[3, 9]) / 2)


def test_encode_example_and_cutting():
    tok = CharTokenizer.train("### Instruction:\nhi\n\n### Response:\nok")
    prompt, response = encode_example(tok, InstructionExample("hi", "ok"), eos_id=99)
    assert tok.decode(prompt) == "### Instruction:\nhi\n\n### Response:\n" and response == [*tok.encode("ok"), 99]
    inputs, targets = instruction_batch([(prompt, response)], pad_id=0, max_length=len(prompt) + 1)
    assert targets[0].tolist() == [-100] * (len(prompt) - 1) + [response[0]]  # cut after the first response token
    with pytest.raises(ValueError, match="empty response"):
        instruction_batch([([1, 2], [])], pad_id=0)
    with pytest.raises(ValueError, match="pairs is empty"):
        instruction_batch([], pad_id=0)


# ----------------------------------------------------------------------------- DPO


def test_dpo_loss_on_a_hand_computed_example():
    # pair 1: the policy raised the chosen answer by 1 nat over the reference and lowered the rejected by 1
    # pair 2: the policy is the reference: the margin is 0 and the loss ln 2
    policy_chosen, policy_rejected = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -5.0])
    ref_chosen, ref_rejected = torch.tensor([-2.0, -4.0]), torch.tensor([-2.0, -5.0])
    beta = 0.5
    out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    margin_1 = beta * ((-1.0 - -2.0) - (-3.0 - -2.0))  # 0.5 * (1 + 1) = 1
    expected = (math.log(1 + math.exp(-margin_1)) + math.log(2)) / 2  # -log sigmoid(m) = log(1 + e^-m)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)  # 0.50320
    assert out.chosen_reward.tolist() == [0.5, 0.0] and out.rejected_reward.tolist() == [-0.5, 0.0]
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0)


def tiny_gpt(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.tiny(vocab_size=20, dropout=0.0)).eval()


def test_sequence_logprob_sums_the_scored_tokens():
    model = tiny_gpt(0)
    inputs, targets = instruction_batch([([1, 2, 3], [4, 5]), ([6], [7, 8, 9])], pad_id=0)
    with torch.no_grad():
        log_p = model(inputs).logits.log_softmax(-1)  # (2, T, V)
        got = sequence_logprob(model, inputs, targets)
    expected = [log_p[0, 2, 4] + log_p[0, 3, 5], log_p[1, 0, 7] + log_p[1, 1, 8] + log_p[1, 2, 9]]
    torch.testing.assert_close(got, torch.stack(expected))


def test_dpo_against_a_frozen_reference_moves_the_policy_only():
    policy, reference = tiny_gpt(0), tiny_gpt(0)
    chosen = instruction_batch([([1, 2, 3], [4, 5]), ([6, 7], [8])], pad_id=0)
    rejected = instruction_batch([([1, 2, 3], [9, 10]), ([6, 7], [11])], pad_id=0)
    frozen = [p.detach().clone() for p in reference.parameters()]
    first = preference_loss(policy, reference, chosen, rejected, beta=0.1)
    assert first.loss.item() == pytest.approx(math.log(2), abs=1e-6)  # policy == reference: margin 0
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    for _ in range(20):
        out = preference_loss(policy, reference, chosen, rejected, beta=0.1)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in reference.parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen, reference.parameters(), strict=True))
    assert out.loss.item() < first.loss.item() - 0.1  # the policy learned to prefer the chosen answers
    assert (out.chosen_reward > out.rejected_reward).all()


# ----------------------------------------------------------------------------- metrics

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.6, 0.4, 0.8]  # positives above negatives in 3 of the 4 pairs: AUC 0.75


def test_metrics_on_hand_checkable_labels():
    assert roc_auc(LABELS, SCORES) == 0.75
    assert accuracy(LABELS, SCORES) == 0.5  # predictions 0 1 0 1
    assert macro_f1(LABELS, SCORES) == 0.5  # F1 = 0.5 for each class
    assert roc_auc([0, 1, 1], [0.2, 0.9, 0.3]) == 1.0


def test_bootstrap_intervals_contain_the_estimate_and_narrow_with_more_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 240)
    scores = np.clip(labels * 0.3 + rng.normal(0.35, 0.25, 240), 0, 1)
    small = bootstrap_interval("roc_auc", labels[:60], scores[:60], n_resamples=300)
    large = bootstrap_interval("roc_auc", labels, scores, n_resamples=300)
    for estimate in (small, large):
        assert estimate.low < estimate.value < estimate.high
    assert large.high - large.low < small.high - small.low
    assert bootstrap_interval("roc_auc", labels, scores, n_resamples=300) == large  # seeded: reproducible
    report = classification_report(labels[:60], scores[:60], n_resamples=100)
    assert set(report) == {"roc_auc", "accuracy", "macro_f1"}
    assert report["accuracy"].value == accuracy(labels[:60], scores[:60])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: roc_auc([0, 2, 1], [0.1, 0.2, 0.3]), "labels must lie in 0..1"),
        (lambda: accuracy([0, 1], [0.1]), "scores must be one number per label"),
        (lambda: roc_auc([1, 1], [0.1, 0.2]), "single class"),
        (lambda: roc_auc([0, 1], [0.1, float("nan")]), "NaN"),
        (lambda: bootstrap_interval("auc", LABELS, SCORES), "metric must be one of"),
        (lambda: bootstrap_interval("roc_auc", LABELS, SCORES, confidence=95), "confidence"),
    ],
)
def test_bad_metric_input_names_the_field(call, message):
    with pytest.raises(ValueError, match=message):
        call()
