"""Where tensors live, and how runs are made repeatable.

Introduced in the landing chapter; used by every later chapter.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

DEVICE_ENV = "LLMCOURSE_DEVICE"
_KNOWN_KINDS = ("cuda", "mps", "cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check_available(name: str) -> torch.device:
    """Parse ``name`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) and check the machine has it."""
    kind, colon, index = name.partition(":")
    if kind not in _KNOWN_KINDS:
        raise ValueError(
            f"{DEVICE_ENV}={name!r} is not a device this course knows; "
            f"use one of: cpu, cuda, cuda:N, mps"
        )
    if colon and (kind != "cuda" or not index.isdigit()):
        raise ValueError(f"{DEVICE_ENV}={name!r}: only cuda takes an index, as in cuda:0")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{DEVICE_ENV}={name!r} asks for CUDA, but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise RuntimeError(
                f"{DEVICE_ENV}={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if kind == "mps" and not _mps_available():
        raise RuntimeError(f"{DEVICE_ENV}={name!r} asks for Apple MPS, which this machine lacks")
    return torch.device(name)


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``LLMCOURSE_DEVICE`` environment variable, if ``prefer`` is
    None) overrides the choice; an unknown or unavailable value raises an error
    that says so rather than silently falling back.

    Introduced in: the landing chapter ("Running on a GPU").
    """
    name = prefer if prefer is not None else os.environ.get(DEVICE_ENV, "").strip()
    if name:
        return _check_available(name.lower())
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices) for repeatable runs.

    Introduced in: the landing chapter; every chapter that trains or samples calls it.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device | str, enabled: bool = True):
    """A bf16 autocast context on a CUDA GPU with native bf16 (Ampere or newer), else a no-op.

    bf16 keeps float32's range, so training needs no loss scaling. Older GPUs
    (and CPUs, MPS) simply compute in float32: slower, never less correct.

    Introduced in: the pretraining chapter; used wherever a model runs on a GPU.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a narrower type (bf16, fp16), else unchanged (float32, float64).

    Softmaxes and losses are computed in float32 under bf16 autocast; a float64
    model (the gradient checks of Appendix A) keeps float64 all the way through.

    Introduced in: the pretraining chapter (bf16); Appendix A relies on the float64 case.
    """
    return x.to(torch.promote_types(x.dtype, torch.float32))
