"""Continual pre-training: the ImageNet EfficientNet-Lite0 trained further on the zoo's own datasets (and,
by the same loop from random weights, the zoo's ResNet-18).

Hosseinzadeh Taher et al. (2021) found that an ImageNet network trained further on medical images
bridges the gap between natural and medical images, and MedNNS starts its supernets from ImageNet
weights. The zoo's supernets here train from scratch (their MBConv space is not EfficientNet's), so the
ImageNet network is what carries the continual pre-training: one shared body, one linear head per
source dataset, each step a batch of one source (round robin), so that BatchNorm normalises one domain
at a time, as it will when the network is fine-tuned on a new dataset. The heads are thrown away; the
body is the start a selector candidate gets (`mednns.selector.pretrained`).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mednns.data.npz import MedDataset
from mednns.nn.config import ModelConfig
from mednns.nn.factory import create_model
from mednns.train.augment import random_shift
from mednns.train.batches import iterate
from mednns.train.device import resolve_device
from mednns.train.loop import TrainConfig, precise_bn, score_split
from mednns.train.losses import task_loss

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ContinualConfig:
    """`params.yaml: continual`."""

    architecture: str = "efficientnet_lite0"
    source: str = "imagenet"    # the start: published weights of `architecture`, "" for random init
    image_size: int = 128       # the resolution the network is trained and later fine-tuned at
    steps: int = 300            # optimizer steps, one source's batch each, in turn
    batch_size: int = 32
    lr: float = 1.0e-3          # AdamW, one-cycle cosine schedule, for the pretrained body
    head_lr_scale: float = 5.0  # the new heads start from random weights: they learn faster
    weight_decay: float = 1.0e-4
    label_smoothing: float = 0.1
    max_shift: int = 2          # random translation, pixels per 28 px of input
    eval_images: int = 400      # per source: val images the trained heads are scored on
    seed: int = 0
    device: str = "cpu"


def source_name(datasets, start: str = "imagenet") -> str:
    """The weights' lineage as a config's `source`: the start (ImageNet or scratch), then these datasets."""
    return "+".join([start or "scratch", *sorted(datasets)])


def continual_pretrain(datasets: list[MedDataset], cfg: ContinualConfig = ContinualConfig()) -> tuple[nn.Module, dict]:
    """`cfg.architecture` from `cfg.source` trained on `datasets` (each with its own head), and a summary with
    each source's val scores through its head. The returned network's classifier is the first source's
    head; a user of the body replaces it (`fit_head`)."""
    device = resolve_device(cfg.device)
    names = [ds.spec.name for ds in datasets]
    torch.manual_seed(cfg.seed)
    first = datasets[0].spec
    net = create_model(ModelConfig(cfg.architecture, 3, cfg.image_size, first.num_classes, first.task.value,
                                   first.label_names, source=cfg.source)).to(device)
    heads = nn.ModuleList([nn.Linear(net.classifier.in_features, ds.spec.num_classes) for ds in datasets]).to(device)
    groups = [{"params": [p for n, p in net.named_parameters() if not n.startswith("classifier.")], "lr": cfg.lr},
              {"params": heads.parameters(), "lr": cfg.lr * cfg.head_lr_scale}]
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=cfg.steps,
                                                pct_start=0.1, anneal_strategy="cos")
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    shift = max(1, round(cfg.max_shift * cfg.image_size / 28)) if cfg.max_shift else 0
    losses = [[] for _ in datasets]
    net.train(), heads.train()
    net.to(memory_format=torch.channels_last)
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc=f"continual pre-training on {', '.join(names)}",
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    for step in bar:
        i = step % len(datasets)
        ds = datasets[i]
        n = ds.spec.splits["train"]
        idx = rng.choice(n, min(n, cfg.batch_size), replace=False)
        (x, y), = iterate(ds.images("train"), ds.labels("train"), len(idx), order=idx, channels=3,
                          size=cfg.image_size, device=device, channels_last=True)
        if shift:
            x = random_shift(x, shift, gen).contiguous(memory_format=torch.channels_last)
        net.classifier = heads[i]  # the network's own forward (dropout and all) through this source's head
        loss = task_loss(net(x), y, ds.spec.task, cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses[i].append(loss.item())
        if (step + 1) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean([v[-5:] for v in losses if v]):.3f}")
    seconds = time.time() - t0
    summary = {"sources": names, "steps": cfg.steps, "seconds": round(seconds, 1),
               "images_per_second": round(cfg.steps * cfg.batch_size / seconds, 1), "config": asdict(cfg),
               "val": _score_heads(net, heads, datasets, cfg, device)}
    for name, scores in summary["val"].items():
        log.info("continual pre-training: %s val acc %.4f through its head", name, scores["acc"])
    net.classifier = heads[0]
    net.cfg = replace(net.cfg, source=source_name(names, cfg.source))
    return net.eval(), summary


def _score_heads(net: nn.Module, heads: nn.ModuleList, datasets: list[MedDataset], cfg: ContinualConfig,
                 device) -> dict:
    """Each source's val accuracy and AUC through its own head, with BatchNorm statistics of that source
    (as a fine-tuned network would have them): evidence that the body learned every source."""
    from mednns.data.subsets import seeded_subset, with_subsets

    out, classifier, net_cfg = {}, net.classifier, net.cfg
    for ds, head in zip(datasets, heads):
        val = seeded_subset(ds.spec.splits["val"], cfg.eval_images, np.random.default_rng(cfg.seed))
        sub = with_subsets(ds, val=val)
        net.classifier = head
        net.cfg = net_cfg.with_head(ds.spec.task.value, ds.spec.num_classes, ds.spec.label_names)
        precise_bn(net, sub, TrainConfig(seed=cfg.seed), device)
        scores = score_split(net, sub, "val", device)
        out[ds.spec.name] = {"acc": round(float(scores["acc"]), 4), "auc": round(float(scores["auc"]), 4)}
    net.classifier, net.cfg = classifier, net_cfg
    return out
