"""Choosing the model for a new dataset: query the meta-space, keep what meets the budget, try the top
k from their supernets with a head fit on the new data, fine-tune the best one.

`select` needs only the meta-space (anything with `query(images, k, constraints)`) and the folder of
supernet checkpoints the zoo was built from; it runs with no MLflow server and no DVC repo.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from torch import nn

from mednns.checkpoint import load_supernet
from mednns.data.npz import MedDataset
from mednns.errors import MedNNSError
from mednns.export import npz_layout
from mednns.finetune import FinetuneConfig, InputFormat, evaluate, fit_head, train
from mednns.space import Arch
from mednns.supernet_train import resolve_device

log = logging.getLogger(__name__)

BUDGET_KEYS = ("max_params", "max_macs", "max_latency_ms")


@dataclass
class Selection:
    """The outcome of `select`: every candidate tried, the chosen one, and its trained network."""

    dataset: str
    candidates: pd.DataFrame     # meta-space ranking of the top k, with `probe_val_acc` of each tried
    chosen: pd.Series
    net: nn.Module
    fmt: InputFormat
    history: list[dict]          # val scores per fine-tuning epoch of the chosen network
    val: dict[str, float]
    test: dict[str, float]
    budget: dict = field(default_factory=dict)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seconds: float = 0.0


class SupernetStore:
    """Supernet checkpoints by source dataset, each loaded once."""

    def __init__(self, folder: str | Path, device="cpu"):
        self.folder, self.device, self._nets = Path(folder), device, {}

    def subnet(self, source: str, arch_json: str) -> tuple[nn.Module, InputFormat]:
        if source not in self._nets:
            self._nets[source] = load_supernet(self.folder / f"{source}.pt", device=self.device)[0]
        supernet = self._nets[source]
        fmt = InputFormat(supernet.in_channels, supernet.image_size)
        return supernet.extract(Arch.from_json(arch_json)), fmt


def select(ds: MedDataset, metaspace, supernets: str | Path, *, k: int = 5, budget: dict | None = None,
           finetune: FinetuneConfig = FinetuneConfig(), probe_epochs: int = 0, device: str = "cpu") -> Selection:
    """Pick, adapt and fine-tune the zoo model that suits `ds` best (see the module docstring).

    Every one of the top `k` candidates gets a head fit on `ds` (and `probe_epochs` of training); the
    best on val is fine-tuned for `finetune.epochs`. Raises MedNNSError when nothing meets `budget`.
    """
    t0 = time.time()
    device = str(resolve_device(device))
    budget = {key: v for key, v in (budget or {}).items() if v is not None}
    unknown = set(budget) - set(BUDGET_KEYS)
    if unknown:
        raise MedNNSError(f"unknown budget key(s) {', '.join(sorted(unknown))}: use {', '.join(BUDGET_KEYS)}")
    ranked = metaspace.query(npz_layout(ds.images("train")), k=k, constraints=budget or None)
    if ranked is None or len(ranked) == 0:
        raise MedNNSError(f"no zoo model meets the budget {budget}; relax --max-params / --max-macs / "
                          "--max-latency-ms")
    ranked = ranked.head(k).reset_index(drop=True)
    store = SupernetStore(supernets, device)
    probe_cfg = replace(finetune, epochs=probe_epochs)
    tried, nets = [], []
    for row in ranked.itertuples():
        net, fmt = store.subnet(row.source_dataset, row.arch_json)
        net = fit_head(net.to(device), ds, fmt, finetune, device)
        if probe_epochs:
            train(net, ds, fmt, probe_cfg, device, desc=f"probe {row.arch_id}")
        score = evaluate(net, ds, "val", fmt, device)
        log.info("candidate %s from %s: predicted %.3f, val acc %.4f after head fit%s", row.arch_id,
                 row.source_dataset, row.predicted_score, score["acc"],
                 f" + {probe_epochs} epoch(s)" if probe_epochs else "")
        tried.append(score)
        nets.append((net, fmt))
    ranked["probe_val_acc"] = [s["acc"] for s in tried]
    ranked["probe_val_auc"] = [s["auc"] for s in tried]
    # Ties (common on small val splits) go to the meta-space's ranking.
    best = int(ranked.sort_values(["probe_val_acc", "predicted_score"], ascending=False, kind="stable").index[0])
    net, fmt = nets[best]
    history, val = [], tried[best]
    if finetune.epochs:
        net = copy.deepcopy(net)  # the candidate's probe state stays as it was scored
        history = train(net, ds, fmt, finetune, device, desc=f"fine-tune {ranked.arch_id[best]}")
        val = evaluate(net, ds, "val", fmt, device)
    net.eval()
    return Selection(
        dataset=ds.spec.name, candidates=ranked, chosen=ranked.iloc[best], net=net, fmt=fmt, history=history,
        val=val, test=evaluate(net, ds, "test", fmt, device), budget=budget, finetune=finetune,
        seconds=time.time() - t0)
