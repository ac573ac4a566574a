"""BatchNorm recalibration: a subnet sliced from a supernet inherits running statistics averaged over
every arch trained, so its own are re-estimated on a few train batches before it is scored."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches) -> nn.Module:
    """Reset every BatchNorm's running stats and re-estimate them as an exact average over `batches`.

    `batches` yields input tensors (or (input, label) pairs). The net is left in eval mode.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    net.train()
    for batch in batches:
        net(batch[0] if isinstance(batch, (tuple, list)) else batch)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return net.eval()
