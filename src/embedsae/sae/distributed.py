"""Data-parallel training with torch.distributed (one SAE, each process training on its share of every batch).

Under `torchrun --nproc_per_node N -m embedsae train ...` every process reads its contiguous share of each
global batch. For the result to equal one process training on the whole batch, what a batch-wide quantity
depends on is summed over the processes: the NMSE normaliser (the batch mean and spread), BatchTopK's k x
batch cut-off, the gradients (each process's loss is its share of the global loss, so summed gradients are
the global gradient), the dead-latent counters and the logged loss sums. Checkpoints, logs and the saved SAE
are written by rank 0 only. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor


def active() -> bool:
    """Whether this process trains together with others."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Processes training together (1 without a process group)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group that torchrun's environment (WORLD_SIZE, RANK, MASTER_ADDR, ...) describes.

    Does nothing outside torchrun or with one process; True when this process now trains with others.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return active()


def finish() -> None:
    """Leave the process group (at the end of a run)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op alone)."""
    import torch.distributed as dist

    if active():
        dist.barrier()


def all_sum(t: Tensor) -> Tensor:
    """t summed over all processes, in place (t itself alone)."""
    import torch.distributed as dist

    if active():
        dist.all_reduce(t)
    return t


def all_cat(t: Tensor) -> Tensor:
    """Every process's t (same shape everywhere) concatenated along the first dimension, in rank order."""
    import torch.distributed as dist

    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def batch_spread(x: Tensor) -> Tensor:
    """||x - mean(x)||^2 over the global batch whose share this process holds (no gradient)."""
    x = x.detach()
    stats = all_sum(torch.cat([x.sum(0), x.new_full((1,), float(len(x)))]))
    return all_sum((x - stats[:-1] / stats[-1]).pow(2).sum())
