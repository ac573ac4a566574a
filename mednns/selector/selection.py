"""Choosing the model for a new dataset: query the meta-space, keep what meets the budget, try the top
k zoo subnets (and the pretrained whole networks asked for) with a head fit on the new data, fine-tune
the best one.

`select` needs only the meta-space (anything with `query(images, k, constraints)`) and a `SubnetStore`
over the supernet checkpoints the zoo was built from; it runs with no MLflow server and no DVC repo.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace

import pandas as pd
from torch import nn

from mednns.data.npz import MedDataset
from mednns.metaspace.model import CONSTRAINT_COLUMNS
from mednns.selector.export import npz_layout
from mednns.selector.finetune import FinetuneConfig, fit_head
from mednns.selector.pretrained import check_pretrained, is_pretrained, pretrained_rows, start_network
from mednns.train.device import resolve_device
from mednns.train.loop import score_split, train
from mednns.utils.errors import MedNNSError
from mednns.zoo.store import SubnetStore

log = logging.getLogger(__name__)

BUDGET_KEYS = ("max_params", "max_macs", "max_latency_ms")
PICK_BY = ("val_acc", "val_loss")   # what ranks the shortlisted candidates after their head fit


@dataclass(frozen=True)
class SelectConfig:
    """`params.yaml: select` (the `mednns select` options are the same knobs)."""

    dataset: str = "breastmnist"      # the dataset the `select` stage runs on (held out of the zoo)
    k: int = 5                        # meta-space candidates tried
    budget: dict = field(default_factory=dict)   # max_params, max_macs, max_latency_ms
    probe_epochs: int = 0             # training epochs per candidate before the pick (0: closed-form head only)
    # Whole networks tried beside the zoo's subnets: the ImageNet EfficientNet-Lite0 and the same trained
    # further on the zoo's datasets (README: selection benchmark; "resnet18_zoo" was measured and not kept as a
    # default); () for the zoo's subnets alone.
    pretrained: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite0_zoo")
    pretrained_size: int = 128        # the ImageNet network's input resolution (images are resized to it); the
                                      # zoo's networks take the resolution they were trained at
    # A zoo subnet is picked over the best whole network only when it leads it on val accuracy by more than
    # this many binomial standard errors of that accuracy (README: selection benchmark); 0: the best val.
    subnet_margin: float = 1.0
    convergence_epochs: int = 10      # the `convergence` stage: epochs of each method
    device: str = "cpu"


@dataclass
class Selection:
    """The outcome of `select`: every candidate tried, the chosen one, and its trained network."""

    dataset: str
    candidates: pd.DataFrame     # meta-space ranking of the top k, with `probe_val_acc` (and `_auc`, `_loss`) of each
    chosen: pd.Series
    net: nn.Module               # its `cfg` says what it is and takes
    history: list[dict]          # val scores per fine-tuning epoch of the chosen network
    val: dict[str, float]
    test: dict[str, float]
    budget: dict = field(default_factory=dict)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seconds: float = 0.0


def check_budget(budget: dict | None) -> dict:
    budget = {key: v for key, v in (budget or {}).items() if v is not None}
    unknown = set(budget) - set(BUDGET_KEYS)
    if unknown:
        raise MedNNSError(f"unknown budget key(s) {', '.join(sorted(unknown))}: use {', '.join(BUDGET_KEYS)}")
    return budget


def shortlist(ds: MedDataset, metaspace, store: SubnetStore, *, k: int = 5, budget: dict | None = None,
              finetune: FinetuneConfig = FinetuneConfig(), probe_epochs: int = 0, pretrained=(),
              pretrained_size: int = 64, device: str = "cpu", pick_by: str = "val_acc",
              subnet_margin: float = SelectConfig.subnet_margin) -> tuple[pd.DataFrame, list[nn.Module], int]:
    """The first half of `select`: the meta-space's top `k` under `budget` and the `pretrained` networks
    that meet it, each with a head fit on `ds` (and `probe_epochs` of training), scored on val. Returns
    (ranking with `probe_val_acc`, `probe_val_auc` and `probe_val_loss`, their networks, the index of the
    best one by `best_candidate`: highest val accuracy, or lowest val loss with `pick_by="val_loss"`)."""
    if pick_by not in PICK_BY:
        raise MedNNSError(f"unknown pick_by {pick_by!r}; use one of {', '.join(PICK_BY)}")
    if not subnet_margin >= 0:
        raise MedNNSError(f"subnet_margin {subnet_margin!r}: use a number of standard errors >= 0")
    budget = check_budget(budget)
    check_pretrained(pretrained)
    ranked = metaspace.query(npz_layout(ds.images("train")), k=k, constraints=budget or None)
    if ranked is None or len(ranked) == 0:
        raise MedNNSError(f"no zoo model meets the budget {budget}; relax --max-params / --max-macs / "
                          "--max-latency-ms")
    ranked = ranked.head(k).reset_index(drop=True)
    if pretrained:
        extra = pretrained_rows(pretrained, ds.spec, pretrained_size, ranked.columns, store)
        extra = extra[_within(extra, budget)]
        ranked = pd.concat([ranked, extra], ignore_index=True) if len(extra) else ranked
    probe_cfg = replace(finetune, epochs=probe_epochs)
    tried, nets = [], []
    for row in ranked.itertuples():
        # The source's statistics are fine here: `fit_head` re-estimates them on `ds` first.
        start = start_network(row.source_dataset, row.arch_id, row.arch_json, ds.spec, store, pretrained_size)
        net = fit_head(start, ds, finetune, device)
        if probe_epochs:
            train(net, ds, probe_cfg, device, desc=f"probe {row.arch_id}")
        score = score_split(net, ds, "val", device, loss=True)
        log.info("candidate %s from %s: predicted %.3f, val loss %.4f, acc %.4f after head fit%s", row.arch_id,
                 row.source_dataset, row.predicted_score, score["loss"], score["acc"],
                 f" + {probe_epochs} epoch(s)" if probe_epochs else "")
        tried.append(score)
        nets.append(net)
    ranked["probe_val_acc"] = [s["acc"] for s in tried]
    ranked["probe_val_auc"] = [s["auc"] for s in tried]
    ranked["probe_val_loss"] = [s["loss"] for s in tried]
    return ranked, nets, best_candidate(ranked, pick_by, subnet_margin, len(ds.labels("val")))


def best_candidate(ranked: pd.DataFrame, pick_by: str = "val_acc", subnet_margin: float = 0.0,
                   n_val: int = 0) -> int:
    """Index of the row `shortlist` picks: the best `probe_<pick_by>`; among equals a whole pretrained
    network (in the order asked for), then the meta-space's ranking. With `subnet_margin` (val accuracy
    only), a zoo subnet that comes first keeps the pick only if it leads the best whole network by more
    than `subnet_margin` binomial standard errors of that network's accuracy on `n_val` images.

    Why the whole networks are preferred: they fine-tune better than the zoo's subnets on average in the
    selection benchmark (README; `--zoo-only` 2.9-4.5 points lower), while a val lead of an image or two is
    noise (on BreastMNIST's 78 val images one image is 1.3 points, a standard error about 4). Without the
    margin, an OrganAMNIST subnet one image ahead of the zoo-trained EfficientNet took BreastMNIST's seed 0
    in the benchmark and ended 2.6 points below that network; with ties going to the subnets, `select`
    ended at 0.827 test, below MedMNIST v2's 0.863. Val loss instead of accuracy was measured and not kept
    (`selector_val_loss`)."""
    whole = pd.Series([is_pretrained(s, a) for s, a in zip(ranked.source_dataset, ranked.arch_id)],
                      index=ranked.index, dtype=bool)
    order = ranked.assign(_zoo=~whole).sort_values(
        [f"probe_{pick_by}", "_zoo", "predicted_score"], ascending=[pick_by == "val_loss", True, False],
        kind="stable", na_position="last").index
    best = order[0]
    networks = [i for i in order if whole[i]]
    if pick_by != "val_acc" or whole[best] or not networks or not (subnet_margin > 0 and n_val > 0):
        return int(best)
    p = float(ranked.probe_val_acc[networks[0]])
    lead = float(ranked.probe_val_acc[best]) - p
    if not math.isfinite(lead):
        return int(best)
    return int(best) if lead > subnet_margin * math.sqrt(p * (1 - p) / n_val) + 1e-12 else int(networks[0])


def _within(rows: pd.DataFrame, budget: dict):
    """Rows that meet `budget`; a figure a row lacks (a pretrained network's MACs or latency) fails it."""
    keep = pd.Series(True, index=rows.index)
    for key, column in CONSTRAINT_COLUMNS.items():
        if key in budget:
            keep &= pd.to_numeric(rows[column], errors="coerce") <= float(budget[key])
    return keep


def select(ds: MedDataset, metaspace, store: SubnetStore, *, k: int = 5, budget: dict | None = None,
           finetune: FinetuneConfig = FinetuneConfig(), probe_epochs: int = 0, pretrained=(),
           pretrained_size: int = 64, device: str = "cpu",
           subnet_margin: float = SelectConfig.subnet_margin) -> Selection:
    """Pick, adapt and fine-tune the zoo model that suits `ds` best (see the module docstring).

    `shortlist`, then the best candidate on val is fine-tuned for `finetune.epochs` (ending with its best
    val epoch when `finetune.keep_best`). Raises MedNNSError when nothing meets `budget`.
    """
    t0 = time.time()
    device = str(resolve_device(device))
    ranked, nets, best = shortlist(ds, metaspace, store, k=k, budget=budget, finetune=finetune,
                                   probe_epochs=probe_epochs, pretrained=pretrained,
                                   pretrained_size=pretrained_size, device=device, subnet_margin=subnet_margin)
    net = nets[best]
    history, val = [], {"acc": ranked.probe_val_acc[best], "auc": ranked.probe_val_auc[best]}
    if finetune.epochs:
        net = copy.deepcopy(net)  # the candidate's probe state stays as it was scored
        history = train(net, ds, finetune, device, desc=f"fine-tune {ranked.arch_id[best]}")
        val = score_split(net, ds, "val", device)
    net.eval()
    return Selection(
        dataset=ds.spec.name, candidates=ranked, chosen=ranked.iloc[best], net=net, history=history,
        val=val, test=score_split(net, ds, "test", device), budget=check_budget(budget), finetune=finetune,
        seconds=time.time() - t0)
