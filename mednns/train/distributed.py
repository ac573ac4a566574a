"""Data-parallel training under torchrun: one process per device (or per CPU share), gloo on CPU, nccl on
GPU.

A stage asks for `nproc` processes; `torchrun_main` re-launches it under torchrun (single node), or the
user launches torchrun across nodes (README: scale-out) and the stage finds itself already under it.
Each rank computes the gradient of its slice of every batch; `all_reduce_grads` sums them into one
bucket per step (the elastic supernet leaves different parameters unused for different archs, which
DistributedDataParallel's hooks do not suit, and every rank runs the same archs, so the set of
gradients is the same on every rank).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def ranks() -> Ranks:
    """This process's place in the process group (rank 0 of 1 outside one)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Ranks()


def torchrun_main(nproc: int, module: str, argv: list[str]) -> int:
    """Run `python -m module argv` as `nproc` processes under torchrun on this node; its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", module, *argv]
    return subprocess.run(cmd).returncode


def device_for(name: str) -> str:
    """On cuda, each local rank gets its own GPU."""
    if name.startswith("cuda") and under_torchrun() and torch.cuda.is_available():
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return name


@contextmanager
def process_group(device: str) -> Iterator[Ranks]:
    """Join torchrun's process group (when launched by it) for the block; yields this process's Ranks."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1 or dist.is_initialized():
        yield ranks()
        return
    device = device_for(device)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    # Rank 0 evaluates alone after each epoch while the others wait in the next all-reduce.
    dist.init_process_group(backend, timeout=timedelta(hours=2))
    try:
        yield ranks()
    finally:
        dist.destroy_process_group()


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum every existing gradient across ranks, in one flat bucket."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    start = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[start:start + n].view_as(g))
        start += n


def all_reduce_sum(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj, src: int = 0):
    """`obj` of rank `src` on every rank (pickled; tensors included)."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
