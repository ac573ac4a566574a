"""Training and scoring a static network on a dataset's splits, fed as the network's config says
(`net.cfg`: input channels and resolution; images of any dataset are converted to them)."""

from __future__ import annotations

import copy
import logging
import math
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mednns.data.npz import MedDataset
from mednns.data.subsets import seeded_subset
from mednns.nn.bn import fold_bn, recalibrate_bn
from mednns.train.augment import random_shift
from mednns.train.batches import iterate, predict
from mednns.train.losses import task_loss
from mednns.train.metrics import evaluate_scores, log_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe for a whole static network (AdamW, one-cycle cosine schedule)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2.0e-3
    backbone_lr_scale: float = 1.0   # learning rate of everything but the classifier, relative to lr
    weight_decay: float = 1.0e-4
    label_smoothing: float = 0.1
    max_shift: int = 2               # augmentation: random translation, pixels per 28 px of input
    bn_images: int = 512             # train images BatchNorm statistics are re-estimated on before each
                                     # evaluation (0: keep the running averages, which lag a fast-moving net)
    keep_best: bool = True           # end with the weights of the epoch that scored best on val
    max_train_images: int = 0        # per epoch (0: the whole train split)
    seed: int = 0


def eval_batch(device) -> int:
    """Inference batch: small on a CPU (activations stay in cache), large on a GPU."""
    return 64 if torch.device(device).type == "cpu" else 512


def input_kwargs(net: nn.Module, device, channels_last: bool = True) -> dict:
    """How `iterate` / `predict` feed `net`: its channels and resolution, from its config."""
    return {"channels": net.cfg.in_channels, "size": net.cfg.image_size, "device": device,
            "channels_last": channels_last}


@torch.inference_mode()
def features(net: nn.Module, images: np.ndarray, device="cpu") -> np.ndarray:
    """Pooled features of `net` (eval mode, BatchNorm folded) for uint8 images."""
    folded = fold_bn(net)
    return torch.cat([folded.forward_features(x).float().cpu()
                      for x, _ in iterate(images, None, eval_batch(device), **input_kwargs(net, device))]).numpy()


def score_split(net: nn.Module, ds: MedDataset, split: str, device="cpu", loss: bool = False) -> dict[str, float]:
    """MedMNIST accuracy and AUC of `net` on one split of `ds` (and its log loss with `loss`)."""
    logits = predict(net, ds.images(split), eval_batch(device), **input_kwargs(net, device))
    scores = evaluate_scores(ds.labels(split), logits, ds.spec.task)
    return {**scores, "loss": log_loss(ds.labels(split), logits, ds.spec.task)} if loss else scores


def precise_bn(net: nn.Module, ds: MedDataset, cfg: TrainConfig, device) -> None:
    """BatchNorm statistics of `net` re-estimated exactly on a seeded train subset (leaves eval mode)."""
    if not cfg.bn_images:
        net.eval()
        return
    idx = seeded_subset(ds.spec.splits["train"], cfg.bn_images, np.random.default_rng([cfg.seed, 11]))
    recalibrate_bn(net, (x for x, _ in iterate(ds.images("train")[idx], None, eval_batch(device),
                                               **input_kwargs(net, device))))


def _param_groups(net: nn.Module, cfg: TrainConfig) -> list[dict]:
    head = {id(p) for p in getattr(net, net.cfg.classifier).parameters()}
    body = [p for p in net.parameters() if id(p) not in head]
    groups = [{"params": [p for p in net.parameters() if id(p) in head], "lr": cfg.lr}]
    if body:
        groups.insert(0, {"params": body, "lr": cfg.lr * cfg.backbone_lr_scale})
    return groups


def train(net: nn.Module, ds: MedDataset, cfg: TrainConfig, device="cpu",
          on_epoch: Callable[[int, dict], None] | None = None, desc: str = "train") -> list[dict]:
    """Train all of `net` for `cfg.epochs` on `ds`'s train split, scoring val after every epoch.

    `on_epoch(epoch, record)` sees the network of that epoch (eval mode). With `cfg.keep_best` the
    network ends with the weights of its best val epoch (the first of equals), marked in the history.
    """
    net.to(device).to(memory_format=torch.channels_last)
    n = ds.spec.splits["train"]
    per_epoch = min(n, cfg.max_train_images) if cfg.max_train_images else n
    steps = max(1, cfg.epochs * math.ceil(per_epoch / cfg.batch_size))
    groups = _param_groups(net, cfg)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                pct_start=0.15, anneal_strategy="cos")
    shift = max(1, round(cfg.max_shift * net.cfg.image_size / 28)) if cfg.max_shift else 0
    gen = torch.Generator().manual_seed(cfg.seed)
    history, best, best_state = [], -1.0, None
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(n)[:per_epoch]
        net.train()
        total = 0.0
        batches = iterate(ds.images("train"), ds.labels("train"), cfg.batch_size, order=order,
                          **input_kwargs(net, device))
        for x, y in tqdm(batches, total=math.ceil(per_epoch / cfg.batch_size), leave=False,
                         desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                         mininterval=1.0 if sys.stderr.isatty() else 30.0):
            x = random_shift(x, shift, gen).contiguous(memory_format=torch.channels_last) if shift else x
            opt.zero_grad(set_to_none=True)
            loss = task_loss(net(x), y, ds.spec.task, cfg.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(x)
        precise_bn(net, ds, cfg, device)
        scores = score_split(net, ds, "val", device)
        record = {"epoch": epoch + 1, "train_loss": total / per_epoch, "val_acc": scores["acc"],
                  "val_auc": scores["auc"]}
        history.append(record)
        log.info("%s epoch %d/%d: loss %.4f, val acc %.4f", desc, epoch + 1, cfg.epochs, record["train_loss"],
                 record["val_acc"])
        if cfg.keep_best and scores["acc"] > best:
            best, best_state = scores["acc"], copy.deepcopy(net.state_dict())
        if on_epoch:
            on_epoch(epoch, record)
    if cfg.keep_best and best_state is not None:
        net.load_state_dict(best_state)
        chosen = max(history, key=lambda r: (r["val_acc"], -r["epoch"]))
        chosen["kept"] = True
    net.eval()
    return history
