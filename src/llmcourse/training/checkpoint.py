"""Checkpoints that survive a crash: written to a temporary file, then renamed.

``os.replace`` swaps the new file in with one atomic step, so whatever stops the
process (Ctrl-C, a killed job, a full disk), the checkpoint on disk is either
the old one or the new one, never half of each.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, rename it to ``path``.

    Introduced in: the Pretraining chapter.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path``, atomically.

    Introduced in: the Pretraining chapter.
    """
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state written by :func:`save_checkpoint` (tensors, numbers, strings and lists only).

    Introduced in: the Pretraining chapter.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from err
