"""The device a command runs on: CUDA when asked for and present, else the CPU (with a warning)."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    # cudnn.benchmark stays at PyTorch's default (off): sandwich training meets a new convolution shape
    # at almost every step of its first epochs, and on an H200 benchmarking each of them cost more than it
    # saved (README, "GPU path").
    if name.startswith("cuda") and not torch.cuda.is_available():
        log.warning("CUDA requested but not available: training on the CPU")
        return torch.device("cpu")
    return torch.device(name)
