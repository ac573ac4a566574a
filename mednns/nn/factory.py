"""One registry of network architectures (as timm's `create_model`): a `ModelConfig` in, a network out."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mednns.nn.baselines import ResNet18
from mednns.nn.config import ModelConfig
from mednns.nn.efficientnet import EfficientNetLite0, load_imagenet
from mednns.nn.supernet import StaticNet
from mednns.utils.errors import MedNNSError

_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "mbconv": StaticNet.from_config,
    "resnet18": ResNet18,
    "efficientnet_lite0": EfficientNetLite0,
}
# Architectures with published pretrained weights: `source` names them in a config.
_PRETRAINED = {("efficientnet_lite0", "imagenet"): load_imagenet}


def create_model(cfg: ModelConfig, state_dict: dict | None = None) -> nn.Module:
    """The network `cfg` describes: with `state_dict`'s weights (eval mode), with published pretrained
    weights when `cfg.source` names them (`efficientnet_lite0` from "imagenet"), else randomly initialised."""
    if cfg.architecture not in _BUILDERS:
        raise MedNNSError(f"unknown architecture {cfg.architecture!r}; known: {', '.join(sorted(_BUILDERS))}")
    net = _BUILDERS[cfg.architecture](cfg)
    if state_dict is None and (cfg.architecture, cfg.source) in _PRETRAINED:
        net = _PRETRAINED[(cfg.architecture, cfg.source)](net)
    if state_dict is not None:
        net.load_state_dict(state_dict)
        net.eval()
    return net


def dataset_model_config(architecture: str, spec, **kw) -> ModelConfig:
    """A config for a network trained from scratch on `spec` (a `DatasetSpec`): its input, its head."""
    return ModelConfig(architecture=architecture, in_channels=spec.channels, image_size=spec.image_size,
                       num_classes=spec.num_classes, task=spec.task.value, class_names=spec.label_names, **kw)


def random_like(net: nn.Module, seed: int) -> nn.Module:
    """`net`'s architecture (its config) with fresh random weights and no source."""
    from dataclasses import replace

    torch.manual_seed(seed)
    return create_model(replace(net.cfg, source="", recalibration={}))
