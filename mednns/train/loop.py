"""Training and scoring a static network on a dataset's splits, fed as the network's config says
(`net.cfg`: input channels and resolution; images of any dataset are converted to them)."""

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

from mednns.data.npz import MedDataset
from mednns.nn.bn import fold_bn
from mednns.train.batches import iterate, predict
from mednns.train.losses import task_loss
from mednns.train.metrics import evaluate_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe for a whole static network (AdamW, one-cycle cosine schedule)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2.0e-3
    weight_decay: float = 1.0e-4
    label_smoothing: float = 0.1
    max_train_images: int = 0   # per epoch (0: the whole train split)
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


def score_split(net: nn.Module, ds: MedDataset, split: str, device="cpu") -> dict[str, float]:
    """MedMNIST accuracy and AUC of `net` on one split of `ds`."""
    logits = predict(net, ds.images(split), eval_batch(device), **input_kwargs(net, device))
    return evaluate_scores(ds.labels(split), logits, ds.spec.task)


def train(net: nn.Module, ds: MedDataset, cfg: TrainConfig, device="cpu",
          on_epoch: Callable[[int, dict], None] | None = None, desc: str = "train") -> list[dict]:
    """Train all of `net` for `cfg.epochs` on `ds`'s train split; val scores after every epoch."""
    net.to(device).to(memory_format=torch.channels_last)
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
        batches = iterate(ds.images("train"), ds.labels("train"), cfg.batch_size, order=order,
                          **input_kwargs(net, device))
        for x, y in tqdm(batches, total=math.ceil(per_epoch / cfg.batch_size), leave=False,
                         desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                         mininterval=1.0 if sys.stderr.isatty() else 30.0):
            opt.zero_grad(set_to_none=True)
            loss = task_loss(net(x), y, ds.spec.task, cfg.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(x)
        scores = score_split(net, ds, "val", device)
        record = {"epoch": epoch + 1, "train_loss": total / per_epoch, "val_acc": scores["acc"],
                  "val_auc": scores["auc"]}
        history.append(record)
        log.info("%s epoch %d/%d: loss %.4f, val acc %.4f", desc, epoch + 1, cfg.epochs, record["train_loss"],
                 record["val_acc"])
        if on_epoch:
            on_epoch(epoch, record)
    return history
