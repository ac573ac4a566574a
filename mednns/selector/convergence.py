"""Does the selected start pay? Test accuracy per epoch of the selected model against the same arch from
random initialisation and against MedMNIST's ResNet-18 from scratch, all trained the same way."""

from __future__ import annotations

import logging

import pandas as pd
import torch

from mednns.data.npz import MedDataset
from mednns.nn.factory import create_model, dataset_model_config, random_like
from mednns.selector.finetune import FinetuneConfig, fit_head
from mednns.selector.pretrained import start_network
from mednns.train.device import resolve_device
from mednns.train.loop import score_split, train
from mednns.zoo.store import SubnetStore

log = logging.getLogger(__name__)

METHODS = ("selected", "same_arch_random_init", "resnet18_scratch")


def convergence(ds: MedDataset, store: SubnetStore, source: str, arch_json: str, cfg: FinetuneConfig,
                device: str = "cpu", arch_id: str = "", pretrained_size: int = 64) -> pd.DataFrame:
    """One row per epoch: test accuracy of each method after that epoch (one cosine run of cfg.epochs).
    The selected start is `source`'s subnet `arch_json`, or the published network `arch_id` when the
    selector chose one (`mednns.selector.pretrained`)."""
    device = str(resolve_device(device))
    selected = fit_head(start_network(source, arch_id, arch_json, ds.spec, store, pretrained_size), ds, cfg, device)
    nets = {
        "selected": selected,
        # Rebuilt from the selected model's config: same arch, same input, same head, random weights.
        "same_arch_random_init": random_like(selected, cfg.seed),
        "resnet18_scratch": create_model(dataset_model_config("resnet18", ds.spec)),
    }
    table = {0: {m: score_split(n.to(device), ds, "test", device)["acc"] for m, n in nets.items()}}
    for method, net in nets.items():
        torch.manual_seed(cfg.seed)

        def on_epoch(epoch: int, _record: dict, net=net, method=method) -> None:
            table.setdefault(epoch + 1, {})[method] = score_split(net, ds, "test", device)["acc"]

        train(net, ds, cfg, device, on_epoch=on_epoch, desc=method)
    rows = [{"epoch": e, **{m: table[e].get(m) for m in METHODS}} for e in sorted(table)]
    return pd.DataFrame(rows)
