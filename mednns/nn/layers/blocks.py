"""Inverted residual (MBConv) blocks: a static one and the elastic one it is extracted from."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mednns.nn.layers.elastic import ElasticBatchNorm2d, ElasticDepthwiseConv2d, ElasticPointwiseConv2d


class MBConv(nn.Module):
    """1x1 expand -> BN -> ReLU6 -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN (+ residual)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = in_channels * expand
        self.use_residual = stride == 1 and in_channels == out_channels
        self.act = nn.ReLU6(inplace=True)
        # With expand ratio 1 the expand conv would only mix channels the project conv mixes anyway.
        self.expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False) if expand != 1 else None
        self.expand_bn = nn.BatchNorm2d(mid) if expand != 1 else None
        self.dw_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid)
        self.project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand_conv is not None:
            out = self.act(self.expand_bn(self.expand_conv(out)))
        out = self.act(self.dw_bn(self.dw_conv(out)))
        out = self.project_bn(self.project_conv(out))
        return x + out if self.use_residual else out


class ElasticMBConv(nn.Module):
    """MBConv holding the largest kernel and expand ratio; `set_active` picks the running sub-block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_choices: tuple[int, ...],
        expand_choices: tuple[int, ...],
        stride: int,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_choices = tuple(kernel_choices)
        self.expand_choices = tuple(expand_choices)
        self.stride = stride
        self.use_residual = stride == 1 and in_channels == out_channels
        self.act = nn.ReLU6(inplace=True)
        max_mid = in_channels * max(expand_choices)
        # Expand ratio 1 skips the expand conv (as MBConv does), so it is only needed for larger ratios.
        needs_expand = max(expand_choices) != 1
        self.expand_conv = ElasticPointwiseConv2d(in_channels, max_mid) if needs_expand else None
        self.expand_bn = ElasticBatchNorm2d(max_mid) if needs_expand else None
        self.dw_conv = ElasticDepthwiseConv2d(max_mid, kernel_choices, stride)
        self.dw_bn = ElasticBatchNorm2d(max_mid)
        self.project_conv = ElasticPointwiseConv2d(max_mid, out_channels)
        self.project_bn = ElasticBatchNorm2d(out_channels)
        self.set_active(max(kernel_choices), max(expand_choices))

    def _check(self, kernel: int, expand: int) -> None:
        if kernel not in self.kernel_choices or expand not in self.expand_choices:
            raise ValueError(
                f"(kernel={kernel}, expand={expand}) not in {self.kernel_choices} x {self.expand_choices}"
            )

    def set_active(self, kernel: int, expand: int) -> None:
        self._check(kernel, expand)
        self.active_kernel = kernel
        self.active_expand = expand

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.active_expand != 1:
            out = self.act(self.expand_bn(self.expand_conv(out, self.in_channels * self.active_expand)))
        out = self.act(self.dw_bn(self.dw_conv(out, self.active_kernel)))
        out = self.project_bn(self.project_conv(out, self.out_channels))
        return x + out if self.use_residual else out

    def extract(self, kernel: int, expand: int) -> MBConv:
        """A standalone MBConv with copies of the weights and BN statistics this setting uses."""
        self._check(kernel, expand)
        mid = self.in_channels * expand
        block = MBConv(self.in_channels, self.out_channels, kernel, expand, self.stride)
        block.to(self.dw_conv.weight.device, self.dw_conv.weight.dtype)
        with torch.no_grad():
            if expand != 1:
                block.expand_conv.weight.copy_(self.expand_conv.active_weight(self.in_channels, mid))
                self.expand_bn.copy_to(block.expand_bn)
            block.dw_conv.weight.copy_(self.dw_conv.active_kernel(kernel, mid))
            self.dw_bn.copy_to(block.dw_bn)
            block.project_conv.weight.copy_(self.project_conv.active_weight(mid, self.out_channels))
            self.project_bn.copy_to(block.project_bn)
        return block
