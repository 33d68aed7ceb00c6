"""The training loop: seven steps, made fast, safe and resumable.

1. data preparation      the token stream and an objective's batches (corpus.py, objectives.py)
2. model initialisation  the model's own ``init_weights``; :class:`Trainer` adds the optimizer
3. forward pass          ``objective.loss(model, inputs, targets)`` ...
4. loss calculation      ... cross-entropy on the predicted tokens
5. backward pass         ``loss.backward()``, then gradient clipping
6. parameter update      ``optimizer.step()`` at the scheduled learning rate
7. iteration             repeat, evaluating on held-out tokens now and then

Around those steps: gradient accumulation (several micro-batches per update),
bf16 autocast and optional ``torch.compile`` on a GPU, DistributedDataParallel
under torchrun, a tqdm progress bar with the loss and tokens/s (and MFU on a
GPU), atomic checkpoints, exact resumption, and clear errors for settings that
cannot work.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from llmcourse.analysis.compute import H100_BF16_PEAK, flops_per_token, mfu
from llmcourse.device import autocast
from llmcourse.training.checkpoint import load_checkpoint, save_checkpoint
from llmcourse.training.distributed import barrier, world
from llmcourse.training.objectives import context_length
from llmcourse.training.optim import lr_at, make_optimizer

EVAL_SEED_OFFSET = 1_000_003  # validation batches use their own, fixed generator


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; nonsense values fail here, with the field's name."""

    max_steps: int = 1_000  # optimizer updates
    batch_size: int = 16  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per update
    lr: float = 3e-3  # peak learning rate
    min_lr: float | None = None  # floor of the cosine; None = lr / 10
    warmup_steps: int = 50
    weight_decay: float = 0.1  # on matrices only
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # largest global gradient norm; None = no clipping
    eval_interval: int = 100  # evaluate every this many steps (and after the last)
    eval_batches: int = 8  # validation batches per evaluation
    seed: int = 0
    amp: bool = True  # bf16 autocast on a CUDA GPU that has it
    compile: bool = False  # torch.compile the model
    checkpoint_path: str | None = None  # where to save (and resume from)
    checkpoint_interval: int = 0  # save every this many steps (0 = only at the end or on Ctrl-C)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "checkpoint_interval", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig.min_lr must be between 0 and lr={self.lr}, got {self.min_lr!r}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"TrainConfig.warmup_steps={self.warmup_steps} is more than max_steps={self.max_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not all(0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be positive or None, got {self.grad_clip!r}")

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"TrainConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class History:
    """What happened during training, step by step (kept in checkpoints)."""

    step: list[int] = field(default_factory=list)  # completed updates
    train_loss: list[float] = field(default_factory=list)  # mean loss of that update's micro-batches
    lr: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # tokens seen so far (all processes)
    seconds: list[float] = field(default_factory=list)  # training time so far (evaluations excluded)
    eval_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return dataclasses.asdict(self)


class Trainer:
    """Trains ``model`` on ``objective`` batches from ``train_tokens``; evaluates on ``val_tokens``.

    Usage::

        trainer = Trainer(model, CausalLM(block_size=128), train_ids, val_ids, TrainConfig(max_steps=500))
        history = trainer.fit()

    Under torchrun (after :func:`~llmcourse.training.distributed.init_distributed`) the
    model is wrapped in DistributedDataParallel: every process draws the same global
    batch (``batch_size x grad_accum x world_size`` sequences) from the same seeded
    generator and trains on its own slice of it, so N processes take exactly the
    update that one process would take with N times the accumulation.

    Introduced in: the Pretraining chapter.
    """

    def __init__(
        self,
        model: nn.Module,
        objective,
        train_tokens: np.ndarray | Tensor,
        val_tokens: np.ndarray | Tensor,
        config: TrainConfig,
        device: torch.device | str | None = None,
    ):
        self.config, self.objective = config, objective
        self.rank, self.world_size = world()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.train_tokens, self.val_tokens = train_tokens, val_tokens
        self.raw_model = model.to(self.device)
        _check_data(model, objective, train_tokens, val_tokens, config, self.world_size)
        self.model = self._wrap(model)
        self.optimizer = make_optimizer(model, config.lr, config.weight_decay, config.betas)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0  # completed optimizer updates
        self.history = History()
        self._interrupted = False

    # ------------------------------------------------------------------ set-up

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # a masked LM leaves the pooler unused: DDP must not wait for its gradients
            unused = getattr(self.objective, "name", "") == "masked LM"
            model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)
        if self.config.compile:
            model = torch.compile(model)
        return model

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one update, over all processes."""
        c = self.config
        return c.batch_size * c.grad_accum * self.world_size * self.objective.block_size

    def flops_per_token(self) -> float:
        c = self.raw_model.config
        n_params = sum(p.numel() for p in self.raw_model.parameters())
        return flops_per_token(n_params, c.n_layer, c.d_model, self.objective.block_size)

    # ------------------------------------------------------------------ the loop

    def fit(self, callbacks: Sequence[Callable[[Trainer], None]] = (), resume: bool = True) -> History:
        """Train until ``config.max_steps`` updates; return the history.

        With ``resume`` and an existing ``config.checkpoint_path``, training continues
        from that checkpoint. Ctrl-C (SIGINT) stops after the current update, saves a
        checkpoint when a path is set, and raises ``KeyboardInterrupt``. Each callback
        is called with the trainer after every update.
        """
        c = self.config
        if resume and c.checkpoint_path and Path(c.checkpoint_path).is_file():
            self.load(c.checkpoint_path)
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not c.progress or self.rank != 0,
                   unit="step", dynamic_ncols=True)
        on_gpu = self.device.type == "cuda"
        fpt = self.flops_per_token() if on_gpu else None
        try:
            with self._deferred_interrupt():
                while self.step < c.max_steps:
                    start = time.perf_counter()
                    loss, lr = self.train_step()
                    seconds = time.perf_counter() - start
                    self._record(loss, lr, seconds)
                    if self.step % c.eval_interval == 0 or self.step == c.max_steps:
                        self.history.eval_step.append(self.step)
                        self.history.val_loss.append(self.evaluate())
                    if c.checkpoint_interval and self.step % c.checkpoint_interval == 0:
                        self.save()
                    bar.update(1)
                    bar.set_postfix(self._postfix(seconds, fpt), refresh=False)
                    for callback in callbacks:
                        callback(self)
                    if self._interrupted:
                        self._stop_on_interrupt()
        finally:
            bar.close()
        if c.checkpoint_path:
            self.save()
        return self.history

    def train_step(self) -> tuple[float, float]:
        """One optimizer update (steps 3 to 6); returns its mean loss and learning rate."""
        c = self.config
        lr = lr_at(self.step, c.lr, c.warmup_steps, c.max_steps, c.final_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rows = c.batch_size * c.grad_accum * self.world_size
        inputs, targets = self.objective.batch(self.train_tokens, rows, self.generator)  # the global batch
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i in range(c.grad_accum):
            m = i * self.world_size + self.rank  # this process's share of the global batch
            x = inputs[m * c.batch_size : (m + 1) * c.batch_size].to(self.device, non_blocking=True)
            y = targets[m * c.batch_size : (m + 1) * c.batch_size].to(self.device, non_blocking=True)
            last = i == c.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.world_size == 1 else self.model.no_sync()
            with sync, autocast(self.device, c.amp):
                loss = self.objective.loss(self.model, x, y) / c.grad_accum  # (3) forward, (4) loss
            loss.backward()  # (5) backward: gradients add up over the micro-batches
            total += loss.detach()
        if c.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), c.grad_clip)
        self.optimizer.step()  # (6) update
        if self.world_size > 1:  # the mean loss over every process's share (gloo has no AVG)
            torch.distributed.all_reduce(total)
            total /= self.world_size
        value = total.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the training loss is {value} at step {self.step + 1} (learning rate {lr:.3g}). "
                "Lower TrainConfig.lr or check the data; the last saved checkpoint is unchanged."
            )
        self.step += 1
        return value, lr

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> float:
        """Mean loss on ``batches`` validation batches (the same batches at every call)."""
        c = self.config
        generator = torch.Generator().manual_seed(c.seed + EVAL_SEED_OFFSET)
        was_training = self.raw_model.training
        self.raw_model.eval()
        losses = []
        for _ in range(batches or c.eval_batches):
            x, y = self.objective.batch(self.val_tokens, c.batch_size, generator)
            with autocast(self.device, c.amp):
                losses.append(self.objective.loss(self.raw_model, x.to(self.device), y.to(self.device)).item())
        self.raw_model.train(was_training)
        return float(np.mean(losses))

    def _record(self, loss: float, lr: float, seconds: float) -> None:
        h = self.history
        h.step.append(self.step)
        h.train_loss.append(loss)
        h.lr.append(lr)
        h.tokens.append((h.tokens[-1] if h.tokens else 0) + self.tokens_per_step)
        h.seconds.append((h.seconds[-1] if h.seconds else 0.0) + seconds)

    def _postfix(self, seconds: float, fpt: float | None) -> dict[str, str]:
        tokens_per_s = self.tokens_per_step / max(seconds, 1e-9)
        postfix = {"loss": f"{self.history.train_loss[-1]:.3f}", "tok/s": f"{tokens_per_s:,.0f}"}
        if self.history.val_loss:
            postfix["val"] = f"{self.history.val_loss[-1]:.3f}"
        if fpt is not None:
            postfix["MFU"] = f"{mfu(tokens_per_s / self.world_size, fpt, H100_BF16_PEAK):.1%}"
        return postfix

    # ------------------------------------------------------------------ Ctrl-C

    @contextlib.contextmanager
    def _deferred_interrupt(self):
        """Turn the first SIGINT into a flag checked between updates (a second one stops at once)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_on_interrupt(self) -> None:
        self._interrupted = False
        where = ""
        if self.config.checkpoint_path:
            self.save()
            where = f"; checkpoint saved to {self.config.checkpoint_path}, call fit() again to resume"
        raise KeyboardInterrupt(f"training interrupted after step {self.step}{where}")

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where training stopped."""
        state = {
            "model_type": type(self.raw_model).__name__,
            "model_config": dataclasses.asdict(self.raw_model.config),
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history.as_dict(),
            "train_config": dataclasses.asdict(self.config),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any], source: str = "the checkpoint") -> None:
        want = (type(self.raw_model).__name__, dataclasses.asdict(self.raw_model.config))
        have = (state["model_type"], state["model_config"])
        if have != want:
            raise ValueError(f"{source} holds a {have[0]} with {have[1]}, not this trainer's {want[0]} with {want[1]}")
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = History(**state["history"])

    def save(self, path: str | Path | None = None) -> None:
        """Write a checkpoint atomically (on the first process only)."""
        path = path or self.config.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path: pass one or set TrainConfig.checkpoint_path")
        if self.rank == 0:
            save_checkpoint(path, self.state_dict())
        barrier()

    def load(self, path: str | Path) -> None:
        """Continue from the checkpoint at ``path``."""
        self.load_state_dict(load_checkpoint(path, map_location=self.device), source=str(path))


def _check_data(model, objective, train_tokens, val_tokens, config: TrainConfig, world_size: int) -> None:
    """Stop with a clear message on settings that cannot work."""
    context = context_length(model)
    if context is not None and objective.block_size > context:
        raise ValueError(
            f"block_size={objective.block_size} is longer than the model's context of {context} tokens"
        )
    rows = config.batch_size * config.grad_accum * world_size
    batch_tokens = rows * objective.block_size
    if batch_tokens > len(train_tokens):
        raise ValueError(
            f"a batch of {rows} sequences x {objective.block_size} tokens = {batch_tokens:,} tokens is larger "
            f"than the training data ({len(train_tokens):,} tokens): lower batch_size, grad_accum or block_size"
        )
    if len(val_tokens) < objective.block_size + 1:
        raise ValueError(
            f"the validation data has {len(val_tokens):,} tokens, fewer than one window of {objective.block_size + 1}"
        )
    vocab = model.config.vocab_size
    for name, tokens in (("training", train_tokens), ("validation", val_tokens)):
        if not getattr(tokens, "holds_token_ids", True):  # stored vectors (chapter 8), not ids
            continue
        top = int(tokens.max())
        if top >= vocab:
            raise ValueError(f"the {name} data holds token id {top}, outside the model's vocabulary of {vocab}")


def model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the GPT or Bert saved in a training checkpoint, weights loaded, in eval mode.

    Introduced in: the Pretraining chapter.
    """
    from llmcourse.models import GPT, Bert, BertConfig, GPTConfig

    kinds = {"GPT": (GPT, GPTConfig), "Bert": (Bert, BertConfig)}
    state = load_checkpoint(path, map_location=device)
    if state.get("model_type") not in kinds:
        raise ValueError(f"{path} holds a {state.get('model_type')!r}; this reads {sorted(kinds)}")
    model_cls, config_cls = kinds[state["model_type"]]
    model = model_cls(config_cls(**state["model_config"])).to(device)
    model.load_state_dict(state["model"])
    return model.eval()
