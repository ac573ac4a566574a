"""Training a static network on a dataset: the selector's fine-tuning and the from-scratch baselines.

A network starts from a head fit in closed form on its frozen features (`fit_head`), then all of it
trains with AdamW and a cosine schedule. Starting from a fitted head rather than a random one keeps
the pretrained features from being wrecked by the first, large gradients of a random head.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mednns.batches import iterate, predict
from mednns.bn import fold_bn, recalibrate_bn
from mednns.data.npz import MedDataset
from mednns.heads import fit_logistic_head, linear_head
from mednns.metrics import evaluate_scores
from mednns.supernet_train import task_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFormat:
    """What a network takes: channels and resolution (images of any dataset are converted to it)."""

    channels: int
    size: int
    channels_last: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    # Per candidate the selector runs these through the net twice (train mode, then eval mode): they
    # are most of `mednns select`'s time with fine-tuning off. 500 images fit a linear head well.
    head_images: int = 500      # train images the closed-form head is fit on
    recalib_images: int = 256   # of those, the ones BatchNorm statistics are re-estimated on
    max_train_images: int = 0   # per epoch (0: the whole train split)
    seed: int = 0


def _eval_batch(device) -> int:
    # On 2 CPU cores a batch of 64 keeps the activations in cache and runs ~1.3x faster than 512.
    return 64 if torch.device(device).type == "cpu" else 512


def _kw(fmt: InputFormat, device) -> dict:
    return {"channels": fmt.channels, "size": fmt.size, "device": device, "channels_last": fmt.channels_last}


@torch.inference_mode()
def features(net: nn.Module, images: np.ndarray, fmt: InputFormat, device="cpu") -> np.ndarray:
    folded = fold_bn(net)
    return torch.cat([folded.forward_features(x).float().cpu()
                      for x, _ in iterate(images, None, _eval_batch(device), **_kw(fmt, device))]).numpy()


def fit_head(net: nn.Module, ds: MedDataset, fmt: InputFormat, cfg: FinetuneConfig, device="cpu") -> nn.Module:
    """Re-estimate BatchNorm statistics on `ds`, then replace `net.classifier` with a logistic-regression
    head fit on frozen features of its train split.

    The statistics a network brings are its source dataset's; on new images its features would shift as
    soon as training mode normalises with batch statistics, and a head fit on the old ones would start
    fine-tuning with a large loss.
    """
    rng = np.random.default_rng(cfg.seed)
    n = ds.spec.splits["train"]
    idx = np.sort(rng.choice(n, min(n, cfg.head_images), replace=False))
    images = ds.images("train")[idx]
    recalibrate_bn(net, (x for x, _ in iterate(images[:cfg.recalib_images], None, _eval_batch(device),
                                               **_kw(fmt, device))))
    feats = features(net, images, fmt, device)
    # Strongly regularised, with floored feature scales: a head that starts with moderate logits
    # fine-tunes smoothly (and exports within 1e-4 of PyTorch); a sharp one saturates the softmax.
    weight, bias = fit_logistic_head(feats, ds.labels("train")[idx], ds.spec.task, ds.spec.num_classes,
                                     C=0.05, min_scale=0.1)
    net.classifier = linear_head(weight, bias).to(device)
    return net


def evaluate(net: nn.Module, ds: MedDataset, split: str, fmt: InputFormat, device="cpu") -> dict[str, float]:
    logits = predict(net, ds.images(split), _eval_batch(device), **_kw(fmt, device))
    return evaluate_scores(ds.labels(split), logits, ds.spec.task)


def train(net: nn.Module, ds: MedDataset, fmt: InputFormat, cfg: FinetuneConfig, device="cpu",
          on_epoch: Callable[[int, dict], None] | None = None, desc: str = "fine-tune") -> list[dict]:
    """Train all of `net` for `cfg.epochs` on `ds`'s train split; val scores after every epoch."""
    net.to(device)
    if fmt.channels_last:
        net.to(memory_format=torch.channels_last)
    n = ds.spec.splits["train"]
    per_epoch = min(n, cfg.max_train_images) if cfg.max_train_images else n
    steps = max(1, cfg.epochs * math.ceil(per_epoch / cfg.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15,
                                                anneal_strategy="cos")
    history = []
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(n)[:per_epoch]
        net.train()
        total = 0.0
        batches = iterate(ds.images("train"), ds.labels("train"), cfg.batch_size, order=order, **_kw(fmt, device))
        for x, y in tqdm(batches, total=math.ceil(per_epoch / cfg.batch_size), leave=False,
                         desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                         mininterval=1.0 if sys.stderr.isatty() else 30.0):
            opt.zero_grad(set_to_none=True)
            loss = task_loss(net(x), y, ds.spec.task, cfg.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(x)
        scores = evaluate(net, ds, "val", fmt, device)
        record = {"epoch": epoch + 1, "train_loss": total / per_epoch, "val_acc": scores["acc"],
                  "val_auc": scores["auc"]}
        history.append(record)
        log.info("%s epoch %d/%d: loss %.4f, val acc %.4f", desc, epoch + 1, cfg.epochs, record["train_loss"],
                 record["val_acc"])
        if on_epoch:
            on_epoch(epoch, record)
    return history
