"""The selection benchmark: is the selector's pick the network that trains best on a dataset it has
never seen, against what a user would otherwise start from?

For every target dataset (each dataset of the zoo in turn, with its supernet, its rows and its features
removed and the meta-space retrained without it, and each dataset held out of the zoo) and every seed,
each method picks a network and that network is fine-tuned on the target's train split with one recipe
(`FinetuneConfig`); test accuracy and AUC (MedMNIST's definitions) are recorded after the head fit
(epoch 0) and after each of `report_epochs`, and for the epoch the recipe keeps (best on val).

Methods (`METHODS`):
- selector: exactly what `mednns select` runs (meta-space top k and the `select.pretrained` networks, a
  head fit on the target, best on val);
- selector_zoo: the selector with the zoo's candidates alone (`mednns select --zoo-only`), an ablation;
- selector_probe: the same as selector with `probe_epochs` of training per candidate before the pick
  (`mednns select --probe-epochs N`), an ablation of how the shortlist is judged;
- selector_val_loss: the same as selector, the candidate with the lowest val log loss picked instead of
  the highest val accuracy, another;
- metaspace_top1: the meta-space's first pick alone;
- logme: LogME (You et al. 2021) of every candidate's frozen features on target train images, its best;
- fid_largest: the largest subnet of the source whose features are nearest (Fréchet distance);
- random: a seeded random zoo model;
- selector_arch_scratch: the selector's architecture from random initialisation;
- resnet18_scratch: MedMNIST v2's ResNet-18 (28) from random initialisation;
- efficientnet_imagenet: ImageNet-pretrained EfficientNet-Lite0 (upsampled input), head fit like a zoo pick;
- efficientnet_zoo: the same trained further on the zoo's datasets without the target (continual
  pre-training, `mednns.train.continual`), head fit like a zoo pick;
- resnet18_zoo: MedMNIST v2's ResNet-18 (28) trained from scratch on the zoo's datasets without the target
  (the same loop), head fit like a zoo pick; an ablation not kept, run when asked for.

Zoo and ImageNet picks start with a closed-form head (and BatchNorm statistics) fit on the target;
scratch networks start from random weights. A pick's query cost is the seconds from the target's
images to the pick. Identical picks (same network, same start) are fine-tuned once per seed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from mednns.data.npz import MedDataset
from mednns.data.subsets import seeded_subset, stratified_subset, with_subsets
from mednns.metaspace.features import DatasetFeatures, FeatureConfig, features_of_images
from mednns.metaspace.fid import frechet_distance
from mednns.metaspace.logme import label_matrix, logme
from mednns.metaspace.loo import SubnetFeatures
from mednns.nn.factory import create_model, dataset_model_config, random_like
from mednns.selector.export import npz_layout
from mednns.selector.finetune import FinetuneConfig, fit_head
from mednns.nn.checkpoint import save_network
from mednns.selector.pretrained import ZOO_NETWORKS, is_pretrained, pretrained_net
from mednns.train.continual import ContinualConfig, continual_pretrain
from mednns.selector.selection import SelectConfig, shortlist
from mednns.data.spec import Task
from mednns.train.batches import predict
from mednns.train.device import resolve_device
from mednns.train.loop import eval_batch, input_kwargs, train
from mednns.train.metrics import evaluate_scores
from mednns.zoo.store import SubnetStore

log = logging.getLogger(__name__)

METHODS = ("selector", "selector_zoo", "selector_probe", "selector_val_loss", "metaspace_top1", "logme", "fid_largest",
           "random", "selector_arch_scratch", "resnet18_scratch", "efficientnet_imagenet", "efficientnet_zoo",
           "resnet18_zoo")
# Baselines that start from one pretrained network of `mednns.selector.pretrained`, with its head fit.
PRETRAINED_METHODS = {"efficientnet_imagenet": "efficientnet_lite0", "efficientnet_zoo": "efficientnet_lite0_zoo",
                      "resnet18_zoo": "resnet18_zoo"}
# Methods whose pick comes from the selector's shortlist with its pretrained networks among the candidates.
SHORTLISTING = {"selector", "selector_probe", "selector_val_loss", "selector_arch_scratch"}
# MedMNIST v2's published ResNet-18 (28) test accuracy after 100 epochs, for reference beside the table.
MEDMNIST_RESNET18 = {"bloodmnist": 0.958, "organamnist": 0.935, "pneumoniamnist": 0.854, "breastmnist": 0.863,
                     "retinamnist": 0.524, "pathmnist": 0.907, "dermamnist": 0.735, "octmnist": 0.743,
                     "tissuemnist": 0.676, "organcmnist": 0.900, "organsmnist": 0.782, "chestmnist": 0.947}


@dataclass(frozen=True)
class BenchmarkConfig:
    """`params.yaml: benchmark` (the fine-tuning recipe itself is `finetune`). The defaults are the demo
    scale, about 100 minutes on a 2-core CPU; params-full.yaml holds the full protocol."""

    targets: tuple[str, ...] = ("breastmnist", "bloodmnist")  # target datasets (empty: every zoo and held-out one)
    seeds: tuple[int, ...] = (0, 1, 2)         # each seeds the meta-space, the random pick and the fine-tuning
    report_epochs: tuple[int, ...] = (1, 3, 10)  # one run of the last; test scores after each of these
    train_images: tuple[int, ...] = (500,)     # regimes: 0 the whole train split, else a stratified subset
    max_train_images: int = 0                  # per fine-tuning epoch (0: all): what sizes the run on a CPU
    max_val_images: int = 400                  # seeded val subset: the head fits' and kept epoch's judge
    max_test_images: int = 1000                # seeded test subset (MedMNIST metrics on it)
    logme_images: int = 300                    # target train images LogME sees per candidate
    efficientnet_size: int = 128               # input resolution of the ImageNet EfficientNet baseline
    # Ablations that did not pay (README) run when asked for (`--methods`).
    methods: tuple[str, ...] = tuple(m for m in METHODS if m not in ("selector_probe", "selector_val_loss",
                                                                     "resnet18_zoo"))
    k: int = 5                                 # the selector's candidates (as `select.k`)
    probe_epochs: int = 1                      # selector_probe: epochs per candidate before the pick


@dataclass
class Pick:
    method: str
    net: nn.Module            # the starting network (head already fit for pretrained starts)
    key: tuple                # identical starts share one fine-tuning run per seed
    seconds: float            # query cost: target images -> pick
    info: dict = field(default_factory=dict)


@dataclass
class Target:
    """One target dataset of the benchmark and what the methods may know about the zoo without it."""

    ds: MedDataset
    metaspace: Callable[[int], object]      # seed -> meta-space trained without the target
    candidates: pd.DataFrame                # zoo models of the other sources (the meta-space's candidates)
    source_features: dict[str, DatasetFeatures]
    store: SubnetStore                      # the supernets, and the zoo's whole networks trained without it


def _zoo_pick(method: str, row, store: SubnetStore, ds: MedDataset, ft: FinetuneConfig, seconds: float,
              device) -> Pick:
    t0 = time.time()
    net = fit_head(store.extract(row.source_dataset, row.arch_json), ds, ft, device)
    return Pick(method, net, ("zoo", row.source_dataset, row.arch_id), seconds + time.time() - t0,
                {"source": row.source_dataset, "arch_id": row.arch_id, "params": int(row.params)})


def _shortlist_pick(method: str, kind: str, ds: MedDataset, ms, store: SubnetStore, cfg: BenchmarkConfig,
                    ft: FinetuneConfig, device, **options) -> Pick:
    """The pick of `shortlist` (as `mednns select` makes it) with `options`; `kind` names its start in the
    fine-tuning key, and an untrained pretrained pick shares the ImageNet baseline's run."""
    t0 = time.time()
    ranked, nets, best = shortlist(ds, ms, store, k=cfg.k, finetune=ft, device=device, **options)
    row = ranked.iloc[best]
    key = ((row.arch_id, int(row.pretrained_size)) if kind == "zoo" and is_pretrained(row.source_dataset, row.arch_id)
           else (kind, row.source_dataset, row.arch_id))
    return Pick(method, nets[best], key, time.time() - t0,
                {"source": row.source_dataset, "arch_id": row.arch_id, "params": int(row.params)})


def logme_ranking(target: Target, subnets: SubnetFeatures, n_images: int) -> tuple[pd.DataFrame, float]:
    """Every candidate with its LogME on the target's train images, best first, and the seconds it took."""
    t0 = time.time()
    ds = target.ds
    idx = seeded_subset(ds.spec.splits["train"], n_images, np.random.default_rng(3))
    images = ds.images("train")[idx]
    y = label_matrix(ds.labels("train")[idx], ds.spec.task, ds.spec.num_classes)
    c = target.candidates.sort_values(["source_dataset", "arch_id"]).reset_index(drop=True)
    c["logme"] = [logme(subnets(r.source_dataset, r.arch_json, npz_layout(images)), y) for r in c.itertuples()]
    return c.sort_values(["logme", "source_dataset", "arch_id"], ascending=[False, True, True],
                         kind="stable").reset_index(drop=True), time.time() - t0


def fid_nearest_largest(target: Target, feature_cfg: FeatureConfig) -> tuple[pd.Series, float]:
    t0 = time.time()
    f = features_of_images(npz_layout(target.ds.images("train")), feature_cfg)
    sources = sorted(set(target.candidates.source_dataset))
    fid = {s: frechet_distance(f.mean, f.cov, target.source_features[s].mean, target.source_features[s].cov)
           for s in sources}
    nearest = min(sources, key=lambda s: (fid[s], s))
    c = target.candidates[target.candidates.source_dataset == nearest]
    return c.sort_values(["params", "arch_id"], ascending=[False, True]).iloc[0], time.time() - t0


def make_picks(target: Target, seed: int, cfg: BenchmarkConfig, ft: FinetuneConfig,
               logme_ranked: tuple[pd.DataFrame, float] | None, fid_pick: tuple[pd.Series, float] | None,
               device="cpu", selector_cfg: SelectConfig = SelectConfig()) -> list[Pick]:
    """Each method's starting network for `target` at `seed`; the selector's pretrained candidates are
    `selector_cfg`'s (`params.yaml: select`), as `mednns select` has them."""
    ds, methods, picks, store = target.ds, set(cfg.methods), [], target.store
    published = {"pretrained": selector_cfg.pretrained, "pretrained_size": selector_cfg.pretrained_size,
                 "subnet_margin": selector_cfg.subnet_margin}
    torch.manual_seed(seed)
    if methods & (SHORTLISTING | {"selector_zoo", "metaspace_top1"}):
        ms = target.metaspace(seed)
        # A pick of the zoo or of the ImageNet network the other methods start from: one run each.
        selector = _shortlist_pick("selector", "zoo", ds, ms, store, cfg, ft, device, **published)
        row = selector.info
        picks.append(selector)
        if "metaspace_top1" in methods:
            t0 = time.time()
            first = ms.query(npz_layout(ds.images("train")), k=1).iloc[0]
            picks.append(_zoo_pick("metaspace_top1", first, store, ds, ft, time.time() - t0, device))
        if "selector_zoo" in methods:
            picks.append(_shortlist_pick("selector_zoo", "zoo", ds, ms, store, cfg, ft, device, pretrained=()))
        if "selector_probe" in methods:
            picks.append(_shortlist_pick("selector_probe", "probed", ds, ms, store, cfg, ft, device,
                                         probe_epochs=cfg.probe_epochs, **published))
        if "selector_val_loss" in methods:
            picks.append(_shortlist_pick("selector_val_loss", "zoo", ds, ms, store, cfg, ft, device,
                                         pick_by="val_loss", **published))
        if "selector_arch_scratch" in methods:
            scratch = random_like(selector.net, seed)
            picks.append(Pick("selector_arch_scratch", scratch, ("scratch", row["source"], row["arch_id"]), 0.0,
                              dict(selector.info)))
    if "logme" in methods and logme_ranked is not None:
        ranked, seconds = logme_ranked
        picks.append(_zoo_pick("logme", ranked.iloc[0], store, ds, ft, seconds, device))
    if "fid_largest" in methods and fid_pick is not None:
        picks.append(_zoo_pick("fid_largest", fid_pick[0], store, ds, ft, fid_pick[1], device))
    if "random" in methods:
        rng = np.random.default_rng([seed, 17])
        row = target.candidates.sort_values(["source_dataset", "arch_id"]).iloc[int(rng.integers(len(target.candidates)))]
        picks.append(_zoo_pick("random", row, store, ds, ft, 0.0, device))
    if "resnet18_scratch" in methods:
        torch.manual_seed(seed)
        net = create_model(dataset_model_config("resnet18", ds.spec))
        picks.append(Pick("resnet18_scratch", net, ("resnet18",), 0.0, {"params": _params(net)}))
    for method, name in PRETRAINED_METHODS.items():
        if method in methods:
            t0 = time.time()
            torch.manual_seed(seed)
            net = fit_head(pretrained_net(name, ds.spec, cfg.efficientnet_size, store), ds, ft, device)
            picks.append(Pick(method, net, (name, net.cfg.image_size), time.time() - t0, {"params": _params(net)}))
    for p in picks:
        p.info.setdefault("params", _params(p.net))
    return [p for p in picks if p.method in methods]


def _params(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def fine_tune_curve(pick: Pick, ds: MedDataset, test: MedDataset, ft: FinetuneConfig, report_epochs, device) -> list[dict]:
    """Test scores of the pick after its head fit, after each of `report_epochs`, and for the kept epoch."""
    net, t0 = pick.net, time.time()
    # A scratch network's head-fit epoch is a random guess: not worth scoring.
    rows = [] if pick.key[0] in ("scratch", "resnet18") else [{"epoch": 0, **_scores(net, test, device)}]

    def on_epoch(epoch: int, record: dict) -> None:
        if epoch + 1 in report_epochs:
            rows.append({"epoch": epoch + 1, "val_acc": record["val_acc"], **_scores(net, test, device)})

    history = train(net, ds, replace(ft, epochs=max(report_epochs)), device, on_epoch=on_epoch,
                    desc=f"{pick.method} {ds.spec.name}")
    kept = next((h["epoch"] for h in history if h.get("kept")), max(report_epochs))
    rows.append({"epoch": "kept", "kept_epoch": kept, **_scores(net, test, device)})
    seconds = time.time() - t0
    return [{**r, "finetune_seconds": seconds} for r in rows]


def _scores(net, test: MedDataset, device) -> dict:
    """Test accuracy and AUC, and how many classes the network predicts at all (1: a constant guess)."""
    logits = predict(net, test.images("test"), eval_batch(device), **input_kwargs(net, device))
    s = evaluate_scores(test.labels("test"), logits, test.spec.task)
    classes = (len(np.unique((logits > 0).numpy(), axis=0)) if test.spec.task is Task.MULTI_LABEL
               else len(np.unique(logits.argmax(1).numpy())))
    return {"test_acc": s["acc"], "test_auc": s["auc"], "predicted_classes": classes}


def regime(ds: MedDataset, train_images: int, max_test: int, max_val: int = 0) -> tuple[MedDataset, MedDataset]:
    """(the dataset with its train split cut to `train_images`, stratified, and its val split to `max_val`;
    the test subset to score on)."""
    rng = np.random.default_rng([train_images, 5])
    train_idx = stratified_subset(ds.labels("train"), train_images, rng, ds.spec.task)
    val_idx = seeded_subset(ds.spec.splits["val"], max_val, np.random.default_rng(7))
    test_idx = seeded_subset(ds.spec.splits["test"], max_test, np.random.default_rng(9))
    return with_subsets(ds, train=train_idx, val=val_idx), with_subsets(ds, test=test_idx)


def regime_name(train_images: int) -> str:
    return f"{train_images} train images" if train_images else "full"


def run_target(target: Target, cfg: BenchmarkConfig, ft: FinetuneConfig,
               subnets: SubnetFeatures | None, feature_cfg: FeatureConfig, device="cpu",
               selector_cfg: SelectConfig = SelectConfig()) -> pd.DataFrame:
    """Every (regime, seed, method) row for one target dataset."""
    name, device = target.ds.spec.name, str(resolve_device(device))
    ft = replace(ft, max_train_images=cfg.max_train_images)
    rows = []
    for n_train in cfg.train_images:
        ds, test = regime(target.ds, n_train, cfg.max_test_images, cfg.max_val_images)
        # What a user of this regime has: its train images only (seed-independent picks, computed once).
        here = replace(target, ds=ds)
        logme_ranked = logme_ranking(here, subnets, cfg.logme_images) if "logme" in cfg.methods and subnets else None
        fid_pick = fid_nearest_largest(here, feature_cfg) if "fid_largest" in cfg.methods else None
        for seed in cfg.seeds:
            done: dict[tuple, list[dict]] = {}
            for pick in make_picks(here, seed, cfg, replace(ft, seed=seed), logme_ranked, fid_pick, device,
                                   selector_cfg):
                if pick.key not in done:
                    done[pick.key] = fine_tune_curve(pick, ds, test, replace(ft, seed=seed), cfg.report_epochs,
                                                     device)
                for r in done[pick.key]:
                    rows.append({"dataset": name, "train_images": n_train or target.ds.spec.splits["train"],
                                 "regime": regime_name(n_train), "seed": seed, "method": pick.method,
                                 "query_seconds": pick.seconds, **pick.info, **r})
            kept = [r for r in rows if r["seed"] == seed and r["train_images"] == rows[-1]["train_images"]
                    and r["epoch"] == "kept"]
            log.info("%s (%s train images), seed %d: %s", name, n_train or "all", seed,
                     ", ".join(f"{r['method']} {r['test_acc']:.3f}" for r in kept))
    return pd.DataFrame(rows)


NAMES = {"selector": "selector (`mednns select`: zoo subnets + both EfficientNets)",
         "selector_zoo": "selector, zoo subnets only (`--zoo-only`)",
         "selector_probe": "selector, probe epoch before the pick",
         "selector_val_loss": "selector, lowest val loss picked",
         "metaspace_top1": "meta-space first pick",
         "logme": "LogME over every candidate", "fid_largest": "largest subnet of FID-nearest source",
         "random": "random zoo model", "selector_arch_scratch": "selector's arch, random init",
         "resnet18_scratch": "ResNet-18 from scratch", "efficientnet_imagenet": "EfficientNet-Lite0, ImageNet",
         "efficientnet_zoo": "EfficientNet-Lite0, ImageNet, then the zoo's datasets",
         "resnet18_zoo": "ResNet-18, trained on the zoo's datasets"}


def needed_networks(cfg: BenchmarkConfig, selector_cfg: SelectConfig) -> list[str]:
    """The zoo's whole networks that a method of `cfg` starts from, or chooses among."""
    shortlisting = SHORTLISTING & set(cfg.methods)
    wanted = {PRETRAINED_METHODS[m] for m in cfg.methods if m in PRETRAINED_METHODS}
    wanted |= set(selector_cfg.pretrained) if shortlisting else set()
    return [name for name in ZOO_NETWORKS if name in wanted]


def networks_without(folder: str | Path, sources: Callable[[], list[MedDataset]], cfgs: dict[str, ContinualConfig]):
    """A `SubnetStore` networks locator for a target left out of the zoo: each of the zoo's whole networks
    trained (with its config in `cfgs`) on `sources()` alone, the first time it is asked for, into `folder`."""
    def locate(name: str) -> Path:
        path = Path(folder) / f"{name}.pt"
        if name in cfgs and not path.is_file():
            save_network(path, *continual_pretrain(sources(), cfgs[name]))
        return path
    return locate


def candidates_without(zoo: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The zoo models a method may pick for `dataset`: every subnet of every other source."""
    own = zoo[(zoo.source_dataset == zoo.target_dataset) & (zoo.source_dataset != dataset)]
    return own.drop_duplicates(["source_dataset", "arch_id"]).sort_values(["source_dataset", "arch_id"]) \
        .reset_index(drop=True)


def regimes(rows: pd.DataFrame) -> list[str]:
    """Regime names in order: the full split first, then the low-data ones by size."""
    first = rows.drop_duplicates("regime")
    return list(first.assign(n=first.regime.map(lambda r: 0 if r == "full" else int(r.split()[0])))
                .sort_values("n").regime)


def at_epoch(rows: pd.DataFrame, epoch) -> pd.DataFrame:
    """The rows scored after `epoch` (an int, or "kept"): the CSV column mixes numbers and "kept"."""
    return rows[rows.epoch.astype(str) == str(epoch)]


def summary(rows: pd.DataFrame, epoch="kept") -> pd.DataFrame:
    """Per (regime, dataset, method): mean and std over seeds of test accuracy and AUC at `epoch`, the
    query seconds, and the regret against the best method on that dataset."""
    g = at_epoch(rows, epoch).groupby(["regime", "dataset", "method"], sort=False)
    out = g.agg(test_acc=("test_acc", "mean"), test_acc_std=("test_acc", "std"), test_auc=("test_auc", "mean"),
                test_auc_std=("test_auc", "std"), query_seconds=("query_seconds", "mean"),
                params=("params", "median"), seeds=("seed", "nunique")).reset_index()
    best = out.groupby(["regime", "dataset"]).test_acc.transform("max")
    out["regret"] = best - out.test_acc
    return out


def paired(rows: pd.DataFrame, epoch, method: str = "selector") -> pd.DataFrame:
    """Per (regime, other method): `method`'s test accuracy minus the other's at `epoch`, averaged over the
    target datasets within each seed, then mean, std and sign count over seeds. Both runs of a pair share
    the seed's train subset, meta-space and fine-tuning order, so a difference that holds in every seed
    can be real while smaller than either method's own spread over seeds."""
    acc = at_epoch(rows, epoch).pivot_table(index=["regime", "seed", "dataset"], columns="method",
                                            values="test_acc")
    out = []
    for other in [m for m in acc.columns if m != method and method in acc.columns]:
        diff = (acc[method] - acc[other]).dropna()
        per_seed = diff.groupby(level=["regime", "seed"]).mean()
        for regime, d in per_seed.groupby(level="regime"):
            out.append({"regime": regime, "method": other, "diff": d.mean(), "diff_std": d.std(),
                        "seeds": len(d), "ahead": int((d > 0).sum())})
    return pd.DataFrame(out, columns=["regime", "method", "diff", "diff_std", "seeds", "ahead"])


def markdown(rows: pd.DataFrame, methods=METHODS) -> str:
    """The README tables: mean over target datasets per method and regime, then per dataset."""
    lines = []
    epochs = sorted({int(e) for e in rows.epoch.astype(str) if e != "kept"})
    for name in regimes(rows):
        sub = rows[rows.regime == name]
        head = ["method", *[f"test acc @{e}" for e in epochs if e], "test acc, kept epoch", "AUC, kept epoch",
                "regret", "query s"]
        lines += [f"**{name}** ({sub.dataset.nunique()} target datasets, {sub.seed.nunique()} seeds; mean over "
                  "datasets of the per-dataset mean ± std over seeds; regret in accuracy points against the best "
                  "method of each dataset)", "", "| " + " | ".join(head) + " |",
                  "|---|" + "---:|" * (len(head) - 1)]
        tables = {e: summary(sub, e) for e in [*epochs, "kept"]}
        for m in [m for m in methods if m in set(sub.method)]:
            cells = []
            for e in [*[e for e in epochs if e], "kept"]:
                t = tables[e][tables[e].method == m]
                cells.append(f"{t.test_acc.mean():.3f} ± {t.test_acc_std.mean():.3f}")
            t = tables["kept"][tables["kept"].method == m]
            cells += [f"{t.test_auc.mean():.3f}", f"{100 * t.regret.mean():.1f}", f"{t.query_seconds.mean():.1f}"]
            lines.append(f"| {NAMES[m]} | " + " | ".join(cells) + " |")
        lines.append("")
        t = tables["kept"]
        datasets = list(dict.fromkeys(t.dataset))
        lines += [f"Per dataset ({name}): test accuracy of the kept epoch, mean ± std over seeds.", "",
                  "| method | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
        for m in [m for m in methods if m in set(t.method)]:
            cells = []
            for d in datasets:
                x = t[(t.method == m) & (t.dataset == d)]
                cells.append(f"{x.test_acc.iloc[0]:.3f} ± {x.test_acc_std.iloc[0]:.3f}" if len(x) else "-")
            lines.append(f"| {NAMES[m]} | " + " | ".join(cells) + " |")
        ref = [f"{MEDMNIST_RESNET18[d]:.3f}" if d in MEDMNIST_RESNET18 else "-" for d in datasets]
        lines += ["| MedMNIST v2 ResNet-18 (28), 100 epochs, all data | " + " | ".join(ref) + " |", ""]
        last = max(epochs) if epochs else None
        pairs = {e: paired(sub, e) for e in [last, "kept"] if e is not None}
        if all(len(p) for p in pairs.values()):
            lines += [f"The selector against each method, paired by seed ({name}): its test accuracy minus the "
                      "method's, averaged over the target datasets within a seed; mean ± std over seeds, and "
                      "the seeds in which the selector is ahead.", "",
                      "| selector minus | " + " | ".join("kept epoch" if e == "kept" else f"epoch {e}"
                                                          for e in pairs) + " |", "|---|" + "---:|" * len(pairs)]
            for m in [m for m in methods if m in set(pairs["kept"].method)]:
                cells = []
                for p in pairs.values():
                    x = p[p.method == m].iloc[0]
                    cells.append(f"{100 * x['diff']:+.2f} ± {100 * x.diff_std:.2f} points "
                                 f"({x.ahead} of {x.seeds})")
                lines.append(f"| {NAMES[m]} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def plot(rows: pd.DataFrame, path, methods=METHODS) -> None:
    """Test accuracy per fine-tuning epoch, mean over target datasets and seeds, one panel per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = regimes(rows)
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        sub = rows[(rows.regime == name) & (rows.epoch.astype(str) != "kept")].copy()
        sub["epoch"] = sub.epoch.astype(int)
        for m in [m for m in methods if m in set(sub.method)]:
            curve = sub[sub.method == m].groupby("epoch").test_acc.mean()
            ax.plot(curve.index, curve.values, marker="o", label=NAMES[m],
                    linewidth=2.5 if m == "selector" else 1.2)
        ax.set_title(f"{name}: test accuracy, mean over datasets and seeds", fontsize=9)
        ax.set_xlabel("fine-tuning epoch (0: head fit only)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
