"""uint8 images to normalised float tensors at the channel count and resolution a model wants."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# MedMNIST's reference transform: ToTensor then Normalize(mean=.5, std=.5), i.e. pixels in [-1, 1].
MEAN, STD = 0.5, 0.5
# ITU-R BT.601 luma, the usual RGB -> grey weights.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def to_tensor(images: np.ndarray | torch.Tensor, channels: int | None = None,
              size: int | None = None) -> torch.Tensor:
    """(N, H, W[, C]) uint8 -> (N, channels, size, size) float32 normalised to [-1, 1]."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if channels is not None and channels != x.shape[1]:
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif channels == 1 and x.shape[1] == 3:
            x = (x * _LUMA).sum(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot convert {x.shape[1]} channel(s) to {channels}")
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
    return ((x - MEAN) / STD).contiguous()
