"""Data parallelism across processes: one model copy per GPU (or CPU process).

Launch a script with ``torchrun --nproc_per_node N script.py`` (add ``--nnodes``
and a rendezvous address for several machines). torchrun sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them, joins
the process group (NCCL on GPUs, gloo on CPUs) and picks this process's device.
The trainer then wraps the model in ``DistributedDataParallel``, which averages
the gradients of all processes after every backward pass, so every copy takes
the same optimizer step.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.distributed as dist


class DistInfo(NamedTuple):
    rank: int  # this process, 0 .. world_size - 1
    local_rank: int  # this process on its machine (its GPU index)
    world_size: int  # number of processes
    device: torch.device


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set ``WORLD_SIZE``."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group that torchrun set up; without torchrun, a single process.

    ``backend`` defaults to NCCL when CUDA is present and gloo otherwise.

    Introduced in: the Pretraining chapter.
    """
    if not launched_by_torchrun():
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistInfo(0, 0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ["WORLD_SIZE"])
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    return DistInfo(rank, local_rank, world_size, device)


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if world()[1] > 1:
        dist.barrier()


def close_distributed() -> None:
    """Leave the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
