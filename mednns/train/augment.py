"""Training-time augmentation that keeps a medical label true: small random translations only.

No flips or rotations: on OrganAMNIST a left-right flip turns "kidney-left" into "kidney-right", and
chest or retina images have a side too. A shift of a few pixels (replicated border) is what a slightly
different crop of the same scan would give.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch (N, C, H, W) moved by up to `max_shift` pixels in each direction."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])
