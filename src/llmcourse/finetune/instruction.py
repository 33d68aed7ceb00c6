"""Instruction tuning data: a prompt template, and batches whose loss covers the response only.

An example is an instruction, an optional input (the sentence to work on) and
the response the model should give. The template turns the first two into a
prompt; the model reads ``prompt + response + end-of-text`` and learns to
predict the next token everywhere, but only the response's tokens (and the
end-of-text that stops it) are scored: every other target is -100, which
cross-entropy ignores, and so is every padded position.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from llmcourse.training.batches import IGNORE_INDEX

TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"
# A shorter prompt for a small model on a CPU: the markers above cost a BPE trained on
# film reviews 29 tokens (it never saw "###"); these cost 10. The input follows a space,
# so its first word is the same token as inside a sentence.
COMPACT_TEMPLATE = "{instruction}\nSentence: {input}\nAnswer:"


@dataclass(frozen=True)
class InstructionExample:
    """One instruction / (input) / response triple.

    Introduced in: chapter 8, Fine-tuning.
    """

    instruction: str
    response: str
    input: str = ""
    template: str | None = None  # None: TEMPLATE (TEMPLATE_NO_INPUT without an input)

    def prompt(self) -> str:
        """The text the model is given; the response follows it directly."""
        if self.template is not None:
            return self.template.format(instruction=self.instruction, input=self.input)
        if self.input:
            return TEMPLATE.format(instruction=self.instruction, input=self.input)
        return TEMPLATE_NO_INPUT.format(instruction=self.instruction)


def encode_example(tokenizer, example: InstructionExample, eos_id: int) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids + [eos_id]) of ``example``.

    The two parts are tokenized apart, so the boundary between them is exact.

    Introduced in: chapter 8, Fine-tuning.
    """
    return tokenizer.encode(example.prompt()), [*tokenizer.encode(example.response), eos_id]


def instruction_batch(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    mask_prompt: bool = True,
    max_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Inputs and next-token targets, both (B, T), from (prompt ids, response ids) pairs.

    For a sequence ``s = prompt + response``, ``inputs = s[:-1]`` and ``targets = s[1:]``;
    a target is -100 where it is a prompt token (when ``mask_prompt``) or padding.
    Rows are padded on the right with ``pad_id`` to the longest; ``max_length``
    (in tokens of ``s``) cuts long sequences from the right.

    Introduced in: chapter 8, Fine-tuning.
    """
    if not pairs:
        raise ValueError("pairs is empty: give at least one (prompt, response) pair")
    rows = []
    for i, (prompt, response) in enumerate(pairs):
        if len(response) == 0:
            raise ValueError(f"pairs[{i}] has an empty response: there would be nothing to learn")
        seq = [*prompt, *response][:max_length]
        if len(seq) < 2:
            raise ValueError(f"pairs[{i}] has {len(seq)} token(s); a next-token target needs at least 2")
        target = list(seq[1:])
        if mask_prompt:  # target j is token j + 1 of seq: a prompt token when j + 1 < len(prompt)
            n_masked = max(0, min(len(prompt) - 1, len(target)))
            target[:n_masked] = [IGNORE_INDEX] * n_masked
        rows.append((seq[:-1], target))
    T = max(len(x) for x, _ in rows)
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, (x, y) in enumerate(rows):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
    return inputs, targets
