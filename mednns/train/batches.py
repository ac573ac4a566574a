"""Feeding uint8 images to a network in batches: shuffled for training, in order for inference."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from mednns.nn.bn import fold_bn
from mednns.data.tensors import to_tensor


def iterate(images: np.ndarray, labels: np.ndarray | None, batch_size: int, *, channels: int | None = None,
            size: int | None = None, device: torch.device | str = "cpu", order: np.ndarray | None = None,
            channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield normalised float batches; images stay uint8 until their batch is due (224 px fits)."""
    idx = np.arange(len(images)) if order is None else order
    for start in range(0, len(idx), batch_size):
        sel = idx[start:start + batch_size]
        x = to_tensor(images[sel], channels=channels, size=size).to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = None if labels is None else torch.as_tensor(labels[sel]).to(device)
        yield x, y


@torch.inference_mode()
def predict(net: nn.Module, images: np.ndarray, batch_size: int = 512, **kwargs) -> torch.Tensor:
    """Logits of `net` (in eval mode) for all images, on the CPU. `net` itself is left as it was."""
    folded = fold_bn(net)
    return torch.cat([folded(x).float().cpu() for x, _ in iterate(images, None, batch_size, **kwargs)])
