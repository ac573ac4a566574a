"""Does the selected start pay? Test accuracy per epoch of the selected model against the same arch from
random initialisation and against MedMNIST's ResNet-18 from scratch, all trained the same way."""

from __future__ import annotations

import logging

import pandas as pd
import torch
from torch import nn

from mednns.baselines import ResNet18
from mednns.checkpoint import read_checkpoint
from mednns.data.npz import MedDataset
from mednns.finetune import FinetuneConfig, InputFormat, evaluate, fit_head, train
from mednns.select import SupernetStore
from mednns.space import Arch
from mednns.supernet import Supernet

log = logging.getLogger(__name__)

METHODS = ("selected", "same_arch_random_init", "resnet18_scratch")


def _random_init_subnet(checkpoint, arch_json: str, num_classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    supernet = Supernet.from_config(read_checkpoint(checkpoint)["config"])
    net = supernet.extract(Arch.from_json(arch_json))
    net.reset_classifier(num_classes)
    return net


def convergence(ds: MedDataset, supernets, source: str, arch_json: str, cfg: FinetuneConfig,
                device: str = "cpu") -> pd.DataFrame:
    """One row per epoch: test accuracy of each method after that epoch (one cosine run of cfg.epochs)."""
    store = SupernetStore(supernets, device)
    selected, fmt = store.subnet(source, arch_json)
    nets = {
        "selected": (fit_head(selected.to(device), ds, fmt, cfg, device), fmt),
        "same_arch_random_init": (_random_init_subnet(store.folder / f"{source}.pt", arch_json,
                                                      ds.spec.num_classes, cfg.seed), fmt),
        "resnet18_scratch": (ResNet18(ds.spec.channels, ds.spec.num_classes),
                             InputFormat(ds.spec.channels, ds.spec.image_size)),
    }
    table = {0: {m: evaluate(n.to(device), ds, "test", f, device)["acc"] for m, (n, f) in nets.items()}}
    for method, (net, f) in nets.items():
        torch.manual_seed(cfg.seed)

        def on_epoch(epoch: int, _record: dict, net=net, f=f, method=method) -> None:
            table.setdefault(epoch + 1, {})[method] = evaluate(net, ds, "test", f, device)["acc"]

        train(net, ds, f, cfg, device, on_epoch=on_epoch, desc=method)
    rows = [{"epoch": e, **{m: table[e].get(m) for m in METHODS}} for e in sorted(table)]
    return pd.DataFrame(rows)
