"""Ready-made pretraining runs: a GPT and a BERT of similar size on the same IMDB tokens.

:func:`cpu_preset` fits the Pretraining chapter's few minutes on a laptop CPU;
:func:`gpu_preset` is the same recipe scaled up (a bigger vocabulary, wider and
deeper models, longer context, more steps, bf16). :func:`auto_preset` picks the
GPU one when CUDA is present, so the chapter's code runs unchanged on both.

Finished runs are cached as checkpoints under :func:`~llmcourse.training.corpus.cache_dir`,
keyed by a hash of the preset, so the Generation chapter reuses the Pretraining
chapter's GPT instead of training it again.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmcourse.models import GPT, Bert, BertConfig, GPTConfig
from llmcourse.tokenizers import BPETokenizer
from llmcourse.training.corpus import END_OF_TEXT, MASK, cache_dir, digest, imdb_tokenizer, imdb_tokens
from llmcourse.training.objectives import CausalLM, MaskedLM
from llmcourse.training.trainer import History, TrainConfig, Trainer

KINDS = ("gpt", "bert")


@dataclass(frozen=True)
class PretrainPreset:
    """One recipe for both models: tokenizer, model shapes, context and training settings."""

    name: str
    vocab_size: int  # BPE vocabulary (special tokens included)
    tokenizer_documents: int  # IMDB training reviews the BPE merges are learned from
    block_size: int  # tokens per training window
    n_layer: int
    n_head: int
    d_model: int
    gpt_train: TrainConfig
    bert_train: TrainConfig

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, d_model=self.d_model, dropout=0.0)

    def bert_config(self) -> BertConfig:
        return BertConfig(vocab_size=self.vocab_size, max_positions=self.block_size, n_layer=self.n_layer,
                          n_head=self.n_head, d_model=self.d_model, dropout=0.0)

    def key(self, kind: str) -> str:
        """A short hash of everything that shapes the ``kind`` run (names the cached checkpoint)."""
        values = dataclasses.asdict(self)
        values.pop("gpt_train" if kind == "bert" else "bert_train")
        for train in ("gpt_train", "bert_train"):
            if train in values:  # where it is saved and whether a bar is drawn change no weight
                for field in ("checkpoint_path", "checkpoint_interval", "progress"):
                    values[train].pop(field)
        return digest(kind, json.dumps(values, sort_keys=True))[:16]


def cpu_preset() -> PretrainPreset:
    """About 45 seconds per model on two CPU cores: byte-level tokens, 4 layers of width 128, context 128.

    The vocabulary is the 256 bytes and the two special tokens (a BPE with no
    merges): with few embeddings to learn, a minute of CPU shows a model learn
    to spell. Both models take the same steps on the same batches. The GPU
    preset uses 8,192 BPE tokens; the course GPT (:mod:`llmcourse.training.course`)
    4,096.

    Introduced in: the Pretraining chapter.
    """
    train = TrainConfig(max_steps=300, batch_size=16, lr=3e-3, warmup_steps=30, eval_interval=50,
                        eval_batches=8, progress=False)
    return PretrainPreset("cpu", vocab_size=258, tokenizer_documents=0, block_size=128,
                          n_layer=4, n_head=4, d_model=128, gpt_train=train, bert_train=train)


def gpu_preset() -> PretrainPreset:
    """The same recipe at GPU scale: 8k vocabulary, 6 layers of width 384, context 256.

    Introduced in: the Pretraining chapter.
    """
    gpt = TrainConfig(max_steps=4_000, batch_size=64, lr=1e-3, warmup_steps=200, eval_interval=250,
                      eval_batches=32, progress=False)
    return PretrainPreset("gpu", vocab_size=8_192, tokenizer_documents=10_000, block_size=256,
                          n_layer=6, n_head=6, d_model=384, gpt_train=gpt, bert_train=gpt)


def auto_preset(device: torch.device | str | None = None) -> PretrainPreset:
    """:func:`gpu_preset` on a CUDA device, :func:`cpu_preset` otherwise.

    Introduced in: the Pretraining chapter.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return gpu_preset() if torch.device(device).type == "cuda" else cpu_preset()


def preset_tokenizer(preset: PretrainPreset) -> BPETokenizer:
    """The preset's BPE tokenizer (trained once, then cached)."""
    return imdb_tokenizer(preset.vocab_size, preset.tokenizer_documents)


def checkpoint_path(preset: PretrainPreset, kind: str) -> Path:
    """Where the finished ``kind`` ("gpt" or "bert") run of ``preset`` is cached."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return cache_dir() / "checkpoints" / f"{preset.name}-{kind}-{preset.key(kind)}.pt"


def make_trainer(preset: PretrainPreset, kind: str, device: torch.device | str = "cpu", seed: int = 0) -> Trainer:
    """A fresh ``kind`` model and its trainer on the preset's IMDB tokens (checkpoints in the cache).

    Introduced in: the Pretraining chapter.
    """
    tokenizer = preset_tokenizer(preset)
    train, val = imdb_tokens(tokenizer, "train"), imdb_tokens(tokenizer, "validation")
    torch.manual_seed(seed)
    path = str(checkpoint_path(preset, kind))
    if kind == "gpt":
        model: nn.Module = GPT(preset.gpt_config())
        objective = CausalLM(preset.block_size)
        config = dataclasses.replace(preset.gpt_train, checkpoint_path=path, seed=seed)
    else:
        model = Bert(preset.bert_config())
        eot, mask = tokenizer.special_tokens[END_OF_TEXT], tokenizer.special_tokens[MASK]
        objective = MaskedLM(preset.block_size, mask_id=mask, vocab_size=preset.vocab_size, protected=(eot, mask))
        config = dataclasses.replace(preset.bert_train, checkpoint_path=path, seed=seed)
    return Trainer(model.to(device), objective, train, val, config)


def pretrained(preset: PretrainPreset, kind: str, device: torch.device | str = "cpu") -> tuple[nn.Module, History]:
    """The finished ``kind`` model of ``preset`` (trained now if the cache does not hold it), in eval mode.

    Introduced in: the Generation chapter.
    """
    trainer = make_trainer(preset, kind, device)
    history = trainer.fit()  # loads the cached run; trains only what is missing
    return trainer.raw_model.eval(), history
