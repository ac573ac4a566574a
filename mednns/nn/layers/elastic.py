"""Weight-sharing layers (Once-for-All style): every smaller setting is a slice of the largest one.

Each layer keeps the weights of its largest configuration and computes the active weights in a
single place, which both the elastic forward and extraction to static layers use, so an extracted
subnet computes exactly what the supernet computed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ElasticPointwiseConv2d(nn.Module):
    """1x1 conv without bias whose active weight is the first `out` x `in` channels of the max weight."""

    def __init__(self, max_in_channels: int, max_out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out_channels, max_in_channels, 1, 1))
        # Same init as nn.Conv2d, so the supernet starts like an ordinary network.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def active_weight(self, in_channels: int, out_channels: int) -> Tensor:
        return self.weight[:out_channels, :in_channels]

    def forward(self, x: Tensor, out_channels: int) -> Tensor:
        return F.conv2d(x, self.active_weight(x.shape[1], out_channels))


class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise conv without bias holding the largest kernel; smaller kernels are transformed centre crops.

    A plain centre crop would force the inner weights to serve every kernel size at once. OFA instead
    passes the crop through a learned (k*k x k*k) linear map per step (7->5, 5->3), shared across
    channels and initialised to identity, so each size can adapt its weights while still sharing them.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes), reverse=True))
        self.stride = stride
        max_kernel = self.kernel_sizes[0]
        self.weight = nn.Parameter(torch.empty(max_channels, 1, max_kernel, max_kernel))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.steps = list(zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]))
        self.transforms = nn.ParameterDict(
            {f"{big}to{small}": nn.Parameter(torch.eye(small * small)) for big, small in self.steps}
        )

    def active_kernel(self, kernel_size: int, channels: int) -> Tensor:
        """Depthwise weight [channels, 1, k, k] for the given kernel size."""
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel size {kernel_size} not in {self.kernel_sizes}")
        weight = self.weight[:channels]
        # Walk down from the largest kernel; the largest itself needs no transform.
        for big, small in self.steps:
            if big == kernel_size:
                break
            start = (big - small) // 2
            crop = weight[:, :, start : start + small, start : start + small]
            flat = F.linear(crop.reshape(channels, small * small), self.transforms[f"{big}to{small}"])
            weight = flat.view(channels, 1, small, small)
        return weight

    def forward(self, x: Tensor, kernel_size: int) -> Tensor:
        channels = x.shape[1]
        weight = self.active_kernel(kernel_size, channels)
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, channels)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of the max layer, C taken from the input.

    Assumes the nn.BatchNorm2d defaults affine=True and track_running_stats=True.

    Slices of the running stats are views, so in training mode F.batch_norm updates the statistics
    of exactly the active channels in place (as OFA's DynamicBatchNorm does).
    """

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as in nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x,
            self.running_mean[:channels],
            self.running_var[:channels],
            self.weight[:channels],
            self.bias[:channels],
            self.training,
            momentum if momentum is not None else 0.0,
            self.eps,
        )

    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        """Copy the parameters and statistics of the first `bn.num_features` channels into `bn`."""
        channels = bn.num_features
        with torch.no_grad():
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        bn.eps = self.eps
        bn.momentum = self.momentum
