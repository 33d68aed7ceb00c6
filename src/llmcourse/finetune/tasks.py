"""Instruction tuning of a GPT: checkable tasks built from sentences, a training objective, exact match.

Every example is made by a program from one sentence, so every answer can be
checked by string comparison:

- ``sentiment``   the sentence's label, `` positive`` or `` negative``;
- ``first word``  the sentence's first word;
- ``last word``   its last word (punctuation left out).

Responses start with a space: in a byte-level BPE trained on running text, a
word inside a sentence is usually one token *with* its leading space
(`` positive`` is one token, ``positive`` three), so the answer is the token the
model already knows and, for the last word, the very token it has to copy.

Each task has training templates (instructions the model is tuned on) and
held-out templates (paraphrases it never sees), so that accuracy can be
measured on new sentences and on new wordings separately.

:class:`InstructionData` holds encoded (prompt, response) pairs; the
:class:`InstructionLM` objective draws batches of them for the course's
``Trainer``, scoring the response only (``mask_prompt=True``) or every token.
:func:`greedy_matches` tells, in one forward pass, whether greedy decoding would
write exactly the response and stop.

Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from llmcourse.finetune.instruction import COMPACT_TEMPLATE, InstructionExample, encode_example, instruction_batch
from llmcourse.training.batches import IGNORE_INDEX
from llmcourse.training.checkpoint import write_atomic
from llmcourse.training.corpus import cache_dir, digest
from llmcourse.training.objectives import next_token_loss, similar_length_rows

LABELS = (" negative", " positive")  # label 0, label 1


def _words(text: str) -> list[str]:
    """The words of a (lower-cased, space-separated) Rotten Tomatoes sentence: tokens holding a letter."""
    return [w for w in text.split() if any(c.isalpha() for c in w)]


@dataclass(frozen=True)
class Task:
    """A task: what it answers for a sentence, and how it is asked.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """

    name: str
    answer: Callable[[str, int], str | None]  # (sentence, label) -> response, or None when undefined
    templates: tuple[str, ...]  # instructions used in training
    held_out: tuple[str, ...]  # paraphrases never used in training


TASKS = {
    "sentiment": Task(
        "sentiment", lambda text, label: LABELS[label],
        ("Is this movie review positive or negative?",
         "Label the sentiment of the review as positive or negative.",
         "Classify the review: positive or negative?"),
        ("Does the critic like the film? Answer positive or negative.",
         "What is the opinion in this sentence, positive or negative?")),
    "first word": Task(
        "first word", lambda text, label: " " + _words(text)[0] if _words(text) else None,
        ("What is the first word of the sentence?",
         "Write the first word of the text.",
         "Give the sentence's first word."),
        ("Which word does this sentence start with?",
         "Copy the opening word.")),
    "last word": Task(
        "last word", lambda text, label: " " + _words(text)[-1] if _words(text) else None,
        ("What is the last word of the sentence?",
         "Write the last word of the text.",
         "Give the sentence's final word."),
        ("Which word does this sentence end with?",
         "Copy the closing word.")),
}


def make_examples(sentences: Sequence[tuple[str, int]], tasks: Sequence[str] = tuple(TASKS),
                  held_out_templates: bool = False, seed: int = 0,
                  template: str | None = COMPACT_TEMPLATE) -> list[tuple[str, InstructionExample]]:
    """(task name, example) for every sentence and task, each with a template drawn at random.

    ``sentences`` are (text, label) pairs; ``held_out_templates`` draws from the
    paraphrases kept out of training instead of the training templates; ``template``
    is the prompt's layout (see :class:`~llmcourse.finetune.InstructionExample`).

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    rng = random.Random(seed)
    out = []
    for text, label in sentences:
        for name in tasks:
            task = TASKS[name]
            response = task.answer(text, int(label))
            if response is None:
                continue
            instruction = rng.choice(task.held_out if held_out_templates else task.templates)
            out.append((name, InstructionExample(instruction, response, input=text, template=template)))
    return out


class InstructionData:
    """Encoded (prompt ids, response ids + end-of-text) pairs, cut to ``max_length`` tokens.

    ``len()`` is the number of tokens held (the ``Trainer`` compares it with a
    batch's size); the ids are not one stream, so the trainer does not scan them.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """

    holds_token_ids = False  # read by the Trainer's checks

    def __init__(self, tokenizer, examples: Sequence[InstructionExample], eos_id: int, max_length: int = 256):
        if not examples:
            raise ValueError("examples is empty")
        self.pairs = []
        for ex in examples:
            prompt, response = encode_example(tokenizer, ex, eos_id)
            keep = max(0, max_length - len(response))  # cut the prompt from the left, never the response
            self.pairs.append((prompt[len(prompt) - keep:] if keep < len(prompt) else prompt, response))
        self.eos_id = eos_id
        self.lengths = torch.tensor([len(p) + len(r) for p, r in self.pairs])  # (N,)

    def __len__(self) -> int:
        return int(self.lengths.sum())

    @property
    def width(self) -> int:
        """The longest sequence, in tokens."""
        return int(self.lengths.max())

    def digest(self) -> str:
        """A hash of every pair (for cache keys)."""
        return digest(*(f"{p}|{r}" for p, r in self.pairs))


@dataclass(frozen=True)
class InstructionLM:
    """Next-token loss on instruction pairs; with ``mask_prompt`` only the response (and end-of-text) is scored.

    A batch is ``batch_size`` pairs drawn uniformly with replacement (``pool > 1``:
    of similar length, as in :class:`~llmcourse.training.objectives.Classification`),
    padded on the right by :func:`~llmcourse.finetune.instruction_batch`.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """

    block_size: int
    pad_id: int
    mask_prompt: bool = True
    pool: int = 4
    name: str = "instruction LM"

    def batch(self, data: InstructionData, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = similar_length_rows(data.lengths, batch_size, self.pool, generator)  # (B,)
        return instruction_batch([data.pairs[i] for i in rows.tolist()], self.pad_id, self.mask_prompt,
                                 max_length=self.block_size)  # (B, T), (B, T)

    def loss(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        return next_token_loss(model(inputs).logits, targets)  # (B, T, V) logits


def _batches(n: int, lengths: Tensor, batch_size: int):
    order = torch.argsort(lengths, descending=True)  # similar lengths together: little padding
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size].tolist()


@torch.no_grad()
def greedy_matches(model: nn.Module, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
                   batch_size: int = 64) -> Tensor:
    """(N,) True where greedy decoding from the prompt writes exactly the response, then stops.

    Greedy decoding picks the most probable token at each step. It reproduces the
    response (and its end-of-text) exactly when, fed the response so far, the
    model's most probable next token is the response's next token at every
    step: one forward pass per example checks that, with no generation loop.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    was_training = model.training
    model.eval()
    lengths = torch.tensor([len(p) + len(r) for p, r in pairs])
    out = torch.zeros(len(pairs), dtype=torch.bool)
    for rows in _batches(len(pairs), lengths, batch_size):
        inputs, targets = instruction_batch([pairs[i] for i in rows], pad_id)  # (B, T), (B, T)
        best = model(inputs).logits.argmax(-1)  # (B, T) ties go to the lowest id, as in generate()
        scored = targets != IGNORE_INDEX
        out[rows] = ((best == targets) | ~scored).all(1)
    model.train(was_training)
    return out


@torch.no_grad()
def choice_logprobs(model: nn.Module, prompts: Sequence[Sequence[int]], choices: Sequence[Sequence[int]],
                    pad_id: int, batch_size: int = 64) -> Tensor:
    """(N, C) log-probability of each choice's tokens after each prompt (scoring instead of generating).

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    from llmcourse.finetune.dpo import sequence_logprob

    was_training = model.training
    model.eval()
    out = torch.empty(len(prompts), len(choices))
    for c, choice in enumerate(choices):
        pairs = [(p, list(choice)) for p in prompts]
        lengths = torch.tensor([len(p) for p in prompts])
        for rows in _batches(len(pairs), lengths, batch_size):
            out[rows, c] = sequence_logprob(model, *instruction_batch([pairs[i] for i in rows], pad_id)).float()
    model.train(was_training)
    return out


@torch.no_grad()
def next_token_logprobs(model: nn.Module, prompts: Sequence[Sequence[int]], batch_size: int = 64) -> Tensor:
    """(N, V) log-probabilities of the token after each prompt: one forward pass gives every one-token answer.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    was_training = model.training
    model.eval()
    lengths = torch.tensor([len(p) for p in prompts])
    out = None
    for rows in _batches(len(prompts), lengths, batch_size):
        width = int(lengths[rows].max())
        ids = torch.zeros(len(rows), width, dtype=torch.long)  # (B, T) padded on the right: causal, so harmless
        for j, i in enumerate(rows):
            ids[j, : lengths[i]] = torch.as_tensor(prompts[i])
        logits = model(ids).logits  # (B, T, V)
        last = logits[torch.arange(len(rows)), lengths[rows] - 1].float().log_softmax(-1)  # (B, V)
        if out is None:
            out = torch.empty(len(prompts), last.size(-1))
        out[rows] = last
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- trained weights, cached


def cached_training(name: str, model: nn.Module, key: Sequence[str], fit: Callable[[nn.Module], Any]
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` in place with ``fit(model)`` (returning a ``History``), or load what an earlier call saved.

    The file name carries a hash of ``key`` (everything that shapes the weights:
    the recipe, the starting weights' hash, the data's hash), as in
    :func:`~llmcourse.finetune.regimes.fine_tune`. The record holds the training
    history and seconds, so a loaded run reports the times measured when it trained.

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    from safetensors.torch import load_model, save_model

    path = cache_dir() / "finetune" / f"gpt-{name}-{digest(*key)[:16]}.safetensors"
    record_path = path.with_suffix(".json")
    if path.is_file() and record_path.is_file():
        load_model(model, str(path))
        return model.eval(), json.loads(record_path.read_text())
    start = time.perf_counter()
    history = fit(model)
    record = {"name": name, "wall_seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
              "history": history.as_dict()}
    text = json.dumps(record, indent=1)
    write_atomic(path, lambda tmp: save_model(model, str(tmp)))
    write_atomic(record_path, lambda tmp: tmp.write_text(text))
    return model.eval(), json.loads(text)


def settings_key(settings: Any) -> str:
    """A stable text of a dataclass or dict of settings, for :func:`cached_training` keys."""
    if dataclasses.is_dataclass(settings):
        settings = dataclasses.asdict(settings)
    return json.dumps(settings, sort_keys=True, default=str)


def exact_match(flags: Tensor | np.ndarray) -> tuple[float, float, float]:
    """Share of True in ``flags`` and its 95% Wilson interval from SciPy (value, low, high).

    Introduced in: chapter 8, Fine-tuning (instruction and preference tuning).
    """
    flags = np.asarray(flags, dtype=bool)
    n, k = len(flags), int(flags.sum())
    if n == 0:
        raise ValueError("flags is empty")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


__all__ = ["LABELS", "TASKS", "InstructionData", "InstructionLM", "Task", "cached_training",
           "choice_logprobs", "exact_match", "greedy_matches", "make_examples", "next_token_logprobs", "settings_key"]

