"""The weight-sharing supernet and the standalone subnets extracted from it."""
from __future__ import annotations

import copy
from itertools import islice
from typing import Any, Iterator

from torch import Tensor, nn

from mednns.nn.config import ModelConfig
from mednns.nn.layers import ElasticMBConv, MBConv
from mednns.nn.space import Arch, SearchSpace


def _stem(in_channels: int, width: int, stride: int) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, min(2, stride), 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(inplace=True),
    ]
    if stride > 2:
        # Large images: pool the rest of the way down so the stages always see ~28-32 px.
        layers.append(nn.MaxPool2d(stride // 2))
    return nn.Sequential(*layers)


def _head(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class StaticNet(nn.Module):
    """One subnet as an ordinary network: plain layers holding only the parameters of `arch`.

    `cfg` says what it is and takes (see `ModelConfig`); `StaticNet.from_config(cfg)` rebuilds it.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        stem: nn.Module,
        first_block: MBConv,
        blocks: list[MBConv],
        head: nn.Module,
        classifier: nn.Linear,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.arch = Arch.from_json(cfg.arch)
        self.stem = stem
        self.first_block = first_block
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.classifier = classifier

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features [N, head_width]."""
        return self.head(self.blocks(self.first_block(self.stem(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> StaticNet:
        """The network `cfg` describes, randomly initialised (load a state dict for its weights)."""
        space, arch = SearchSpace.from_dict(cfg.space), Arch.from_json(cfg.arch)
        space.validate(arch)
        blocks, channels = [], space.stem_width
        for stage, (width, stride) in enumerate(zip(space.widths, space.strides)):
            for index in range(arch.depths[stage]):
                slot = stage * space.max_depth + index
                blocks.append(MBConv(channels, width, arch.kernels[slot], arch.expands[slot],
                                     stride if index == 0 else 1))
                channels = width
        return cls(cfg, _stem(cfg.in_channels, space.stem_width, space.stem_stride(cfg.image_size)),
                   MBConv(space.stem_width, space.stem_width, kernel=3, expand=1, stride=1), blocks,
                   _head(channels, space.head_width), nn.Linear(space.head_width, cfg.num_classes))


class Supernet(nn.Module):
    """Once-for-All style supernet: every architecture of `space` runs on slices of shared weights.

    Layout: stem (conv3x3 [+ max-pool for large images]) -> fixed MBConv (expand 1, kernel 3, as in
    OFA) -> elastic stages -> 1x1 conv to head_width -> global average pool -> linear classifier.
    """

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int, image_size: int = 28) -> None:
        super().__init__()
        self.space = space
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        # The dataset the weights are trained on (its name, task and class names), set by whoever
        # knows it (the trainer, `load_supernet`): it goes into every extracted subnet's config.
        self.dataset: dict = {}
        self.stem = _stem(in_channels, space.stem_width, space.stem_stride(image_size))
        self.first_block = MBConv(space.stem_width, space.stem_width, kernel=3, expand=1, stride=1)
        stages = []
        channels = space.stem_width
        for width, stride in zip(space.widths, space.strides):
            blocks = []
            for index in range(space.max_depth):
                # Only a stage's first block changes resolution and width.
                block_stride = stride if index == 0 else 1
                blocks.append(
                    ElasticMBConv(channels, width, space.kernel_choices, space.expand_choices, block_stride)
                )
                channels = width
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.head = _head(channels, space.head_width)
        self.classifier = nn.Linear(space.head_width, num_classes)
        self.set_active(space.largest())

    def _blocks_of(self, arch: Arch) -> Iterator[tuple[ElasticMBConv, int, int]]:
        """(block, kernel, expand) for every block `arch` runs, in order."""
        for stage_index, (stage, depth) in enumerate(zip(self.stages, arch.depths)):
            for index in range(depth):
                slot = stage_index * self.space.max_depth + index
                yield stage[index], arch.kernels[slot], arch.expands[slot]

    def set_active(self, arch: Arch) -> None:
        self.space.validate(arch)
        for block, kernel, expand in self._blocks_of(arch):
            block.set_active(kernel, expand)
        self._active_arch = arch

    @property
    def active_arch(self) -> Arch:
        return self._active_arch

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features [N, head_width] of the active architecture."""
        x = self.first_block(self.stem(x))
        for stage, depth in zip(self.stages, self._active_arch.depths):
            for block in islice(stage, depth):
                x = block(x)
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))

    def extract(self, arch: Arch) -> StaticNet:
        """Standalone copy of `arch` (same device and train/eval mode); the active arch is unchanged."""
        self.space.validate(arch)
        blocks = [block.extract(kernel, expand) for block, kernel, expand in self._blocks_of(arch)]
        net = StaticNet(
            self.model_config(arch),
            copy.deepcopy(self.stem),
            copy.deepcopy(self.first_block),
            blocks,
            copy.deepcopy(self.head),
            copy.deepcopy(self.classifier),
        )
        return net.train(self.training)

    def model_config(self, arch: Arch) -> ModelConfig:
        """The config of `extract(arch)`."""
        d = self.dataset
        return ModelConfig(architecture="mbconv", in_channels=self.in_channels, image_size=self.image_size,
                           num_classes=self.num_classes, task=d.get("task", "multi-class"),
                           class_names=tuple(d.get("class_names", ())) or tuple(map(str, range(self.num_classes))),
                           source=d.get("source", ""), arch=arch.to_json(), space=self.space.to_dict())

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments, to rebuild the supernet from a checkpoint."""
        return {
            "space": self.space.to_dict(),
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Supernet:
        space = SearchSpace.from_dict(cfg["space"])
        return cls(space, cfg["in_channels"], cfg["num_classes"], cfg["image_size"])
