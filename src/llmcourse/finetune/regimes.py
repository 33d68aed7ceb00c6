"""The regimes of fine-tuning, trained through the course's ``Trainer`` and cached by what shapes them.

A :class:`Regime` names which parameters of a :class:`~llmcourse.finetune.BertClassifier`
train and how long: the head alone, the head and the last ``k`` blocks (both on
states cached below the frozen part, see :mod:`llmcourse.finetune.cached`), LoRA
adapters, or everything. :func:`fine_tune` builds the classifier, trains it and
saves the trained tensors with a record (training seconds, seconds per epoch,
extra memory, losses) under the course's cache. The file name carries a hash of
the regime, the base weights and the training sentences, so a second call loads
the result instead of training again, as the pretraining presets do.

Introduced in: chapter 8, Fine-tuning.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch import Tensor

from llmcourse.finetune.cached import CachedClassification, CachedStates, TopClassifier, longest_first
from llmcourse.finetune.data import LabelledSentences
from llmcourse.finetune.heads import BertClassifier, count_trainable, freeze, unfreeze_last
from llmcourse.finetune.lora import ALL_LINEAR, add_lora
from llmcourse.training.checkpoint import write_atomic
from llmcourse.training.corpus import cache_dir, digest
from llmcourse.training.objectives import Classification
from llmcourse.training.trainer import TrainConfig, Trainer

FORMAT = 1  # bump when the saved layout changes


@dataclass(frozen=True)
class Regime:
    """Which parameters train, and the schedule.

    - ``top_blocks=k`` (an int): the head and the last ``k`` encoder blocks train on
      cached states (``k = 0``: the head alone);
    - ``lora_rank=r > 0``: LoRA adapters on ``lora_targets`` (alpha = ``lora_alpha``) and the head;
    - neither: full fine-tuning (every encoder parameter; the unused BERT pooler stays frozen).

    Introduced in: chapter 8, Fine-tuning.
    """

    name: str
    top_blocks: int | None = None
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] | str = ("query", "value")
    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    warmup_steps: int = 10
    pool: int = 8  # batches of similar length (see ``Classification``)
    seed: int = 0

    def __post_init__(self):
        if self.top_blocks is not None and self.lora_rank:
            raise ValueError(f"regime {self.name!r}: choose top_blocks or lora_rank, not both")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ValueError(f"regime {self.name!r}: lora_rank must be an integer >= 0, got {self.lora_rank!r}")
        self.train_config()  # nonsense steps, batch sizes or rates fail now, with the field's name

    @property
    def cached(self) -> bool:
        """True when the regime trains on stored states of the frozen bottom."""
        return self.top_blocks is not None

    def train_config(self, checkpoint_path: str | None = None) -> TrainConfig:
        return TrainConfig(max_steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                           warmup_steps=self.warmup_steps, weight_decay=0.01, betas=(0.9, 0.999),
                           eval_interval=max(1, self.steps // 4), eval_batches=4, seed=self.seed,
                           checkpoint_path=checkpoint_path, progress=False)

    def key(self, base: str, data: str) -> str:
        """A short hash of everything that shapes the trained weights."""
        values = json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)
        return digest(str(FORMAT), values, base, data)[:16]


def build(regime: Regime, make_base: Callable[[], BertClassifier],
          head: dict[str, Tensor] | None = None) -> BertClassifier:
    """A fresh classifier from ``make_base()`` with exactly the regime's parameters trainable.

    ``head`` (a state dict of ``model.head``) starts the head from trained weights
    instead of random ones: "linear probing, then fine-tuning" (Kumar et al. 2022).
    """
    torch.manual_seed(regime.seed)  # the head's initial weights
    model = make_base()
    if head is not None:
        model.head.load_state_dict(head)
    if regime.cached:
        freeze(model.encoder)
        unfreeze_last(model, regime.top_blocks)
    elif regime.lora_rank:
        freeze(model.encoder)
        targets = regime.lora_targets if regime.lora_targets == ALL_LINEAR else tuple(regime.lora_targets)
        add_lora(model.encoder, r=regime.lora_rank, alpha=regime.lora_alpha, target_modules=targets)
    return model


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_probe() -> Callable[[], int] | None:
    """Bytes the C heap has handed out and not taken back (glibc's mallinfo2), or None elsewhere."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd  # small blocks in use + large, mmapped blocks

    return in_use


class PeakMemory:
    """The most memory this process held above its level at entry, sampled every few ms (MB).

    On Linux with glibc it reads the bytes allocated and not yet freed (``mallinfo2``),
    which is where PyTorch keeps CPU tensors: memory freed by an earlier regime and
    kept by the allocator does not hide this one's. Elsewhere it falls back to the
    resident set size, which can only show growth. ``method`` says which was used.
    """

    def __init__(self, interval: float = 0.005):
        self.interval, self.extra_mb = interval, 0.0
        heap = _heap_probe()
        process = psutil.Process()
        self.method = "heap in use (mallinfo2)" if heap else "resident set"
        self._read = heap or (lambda: process.memory_info().rss)
        self._stop = threading.Event()

    def _sample(self, baseline: int) -> None:
        peak = baseline
        while not self._stop.wait(self.interval):
            peak = max(peak, self._read())
        self.extra_mb = max(0, max(peak, self._read()) - baseline) / 2**20

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, args=(self._read(),), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def _alone(path: Path):
    """Hold an exclusive lock beside ``path``: two processes (chapters executed side by side)
    that need the same cache entry compute it once, the second waiting and then loading it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


def _trained_tensors(model: BertClassifier) -> dict[str, Tensor]:
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


@dataclass
class FineTuned:
    """A trained classifier and the record of its training (loaded from the cache or measured now)."""

    model: BertClassifier
    record: dict[str, Any]
    path: Path


def fine_tune(regime: Regime, make_base: Callable[[], BertClassifier], base_digest: str,
              train: LabelledSentences, val: LabelledSentences,
              states: tuple[CachedStates, CachedStates] | Callable[[], tuple[CachedStates, CachedStates]] | None = None,
              head: dict[str, Tensor] | None = None) -> FineTuned:
    """Train ``regime`` on ``train`` (validation loss on ``val``), or load it from the cache.

    Cached regimes need ``states``: the frozen bottom's output for ``train`` and ``val``
    (from :func:`~llmcourse.finetune.cached.frozen_states` with ``k = regime.top_blocks``),
    or a function that computes them, called only when the regime has to train.
    ``base_digest`` identifies the starting weights (for the cache key); ``head``, when
    given, is where the head starts (see :func:`build`).

    Introduced in: chapter 8, Fine-tuning.
    """
    from safetensors.torch import load_file, save_file

    if regime.cached and states is None:
        raise ValueError(f"regime {regime.name!r} trains on cached states: pass states=(train, val)")
    model = build(regime, make_base, head)
    data_key = digest(train.ids.numpy().tobytes(), train.labels.numpy().tobytes())
    if head is not None:
        base_digest = digest(base_digest, *(f"{k}:{v.numpy().tobytes().hex()}" for k, v in sorted(head.items())))
    path = cache_dir() / "finetune" / f"{regime.name}-{regime.key(base_digest, data_key)}.safetensors"
    record_path = path.with_suffix(".json")
    with _alone(path):
        if path.is_file() and record_path.is_file():
            saved = load_file(str(path))
            if set(saved) != set(_trained_tensors(model)):
                raise RuntimeError(f"{path} does not hold this regime's trained tensors; delete it to retrain")
            model.load_state_dict(saved, strict=False)
            return FineTuned(model.eval(), json.loads(record_path.read_text()), path)

        if callable(states):
            states = states()
        if regime.cached:
            trainee, objective = TopClassifier(model, regime.top_blocks), CachedClassification(states[0].width, pool=regime.pool)
            train_data, val_data = states
        else:
            trainee, objective = model, Classification(block_size=train.width, pad_id=train.pad_id, pool=regime.pool)
            train_data, val_data = train, val
        trainer = Trainer(trainee, objective, train_data, val_data, regime.train_config())
        with PeakMemory() as memory:
            history = trainer.fit()
        seconds = history.seconds[-1]
        record = {
            "regime": dataclasses.asdict(regime),
            "trainable": count_trainable(model),
            "sentences_seen": regime.steps * regime.batch_size,
            "training_seconds": seconds,
            "seconds_per_epoch": seconds / regime.steps * math.ceil(train.n_sentences / regime.batch_size),
            "extra_memory_mb": memory.extra_mb,
            "memory_method": memory.method,
            "threads": torch.get_num_threads(),
            "history": history.as_dict(),
        }
        text = json.dumps(record, indent=1)
        write_atomic(path, lambda tmp: save_file(_trained_tensors(model), str(tmp)))
        write_atomic(record_path, lambda tmp: tmp.write_text(text))
        return FineTuned(model.eval(), json.loads(text), path)  # as a later load will read it


def cached_arrays(name: str, key: Sequence[str], compute: Callable[[], dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays ``compute()`` returns (a dict of name -> array), or what an earlier call with ``key`` saved.

    For measurements that take a while and depend only on what ``key`` names (the
    trained weights' file, the inputs, the settings): a regime's scores on the
    test sentences, exact-match flags of an evaluation, sampled continuations.
    Arrays are stored with safetensors under the course's cache, beside the
    weights :func:`fine_tune` stores; a loaded result equals the computed one exactly.

    Introduced in: chapter 8, Fine-tuning.
    """
    from safetensors.numpy import load_file, save_file

    path = cache_dir() / "finetune" / f"{name}-{digest(*key)[:16]}.safetensors"
    if path.is_file():
        return load_file(str(path))
    with _alone(path):
        if not path.is_file():  # not computed by another process meanwhile
            computed = compute()
            if not isinstance(computed, dict) or not computed:
                raise TypeError(f"compute() must return a non-empty dict of arrays, got {type(computed).__name__}")
            arrays = {k: np.ascontiguousarray(v.numpy() if isinstance(v, Tensor) else np.asarray(v))
                      for k, v in computed.items()}
            write_atomic(path, lambda tmp: save_file(arrays, str(tmp)))
    return load_file(str(path))  # as a later call will read it


@torch.inference_mode()
def sentence_scores(model: BertClassifier, data: LabelledSentences, batch_size: int = 128) -> Tensor:
    """(N,) probability of class 1 for every sentence of ``data`` (eval mode, longest sentences first).

    Introduced in: chapter 8, Fine-tuning.
    """
    was_training = model.training
    model.eval()
    mask = data.attention_mask()  # (N, T)
    scores = torch.empty(data.n_sentences)
    for rows, width in longest_first(mask.sum(1), batch_size):
        logits = model(data.ids[rows, :width], mask[rows, :width])  # (B, n_classes)
        scores[rows] = torch.softmax(logits.float(), dim=-1)[:, 1]
    model.train(was_training)
    return scores


__all__ = ["FineTuned", "PeakMemory", "Regime", "build", "cached_arrays", "fine_tune", "sentence_scores"]
