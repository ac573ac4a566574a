"""Supernet training: the largest arch first, then the sandwich rule (largest + smallest + random archs
per step) with in-place distillation from the largest, as BigNAS / Once-for-All do.

Resumable: after every epoch the whole training state goes to `<checkpoint>.resume.pt`; a later call
with the same config continues from there and, because every epoch is seeded by its index, ends with
the same weights as an uninterrupted run.

Data-parallel under torchrun (`mednns.train.distributed`): every rank draws the same images and archs
(the same seeds), takes its slice of each batch, and the gradients are summed across ranks before each
step, so the ranks hold the same weights; rank 0 alone evaluates and writes the checkpoint and the
resume state. BatchNorm normalises over each rank's slice (as plain DDP does), so `nproc` is part of the
config. Mixed precision (`amp`): float16 autocast and a GradScaler on cuda, off on a CPU.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from mednns.train.batches import iterate, predict
from mednns.nn.bn import recalibrate_bn
from mednns.nn.checkpoint import dataset_info, save_supernet
from mednns.data.npz import MedDataset
from mednns.data.subsets import seeded_subset
from mednns.train import distributed
from mednns.train.device import resolve_device
from mednns.train.losses import distill_loss, task_loss
from mednns.train.metrics import evaluate_scores
from mednns.nn.space import Arch, SearchSpace
from mednns.nn.supernet import Supernet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupernetConfig:
    """Every hyper-parameter of supernet training; `params.yaml: supernet` maps onto it."""

    device: str = "cpu"               # or cuda; `--device` on the stage script overrides
    epochs: int = 7
    warmup_epochs: int = 2            # largest arch only, before the sandwich rule starts
    batch_size: int = 128
    optimizer: str = "sgd"            # sgd (Nesterov) or adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5.0e-5
    label_smoothing: float = 0.1
    random_archs: int = 1             # random archs per step besides the largest and the smallest
    max_train_per_epoch: int = 4000   # cap on images per epoch, a fresh random subset each epoch (0: all)
    recalib_images: int = 2000        # train images for BatchNorm recalibration before each eval
    monitor_images: int = 500         # after each epoch: recalibration and val subsets of this size (0: all)
    eval_batch_size: int = 512
    seed: int = 0
    channels_last: bool = True
    space: dict = field(default_factory=dict)  # SearchSpace overrides; empty for the default space
    nproc: int = 1                    # data-parallel processes; > 1: the stage launches torchrun
    amp: bool = False                 # mixed precision on cuda (ignored on a CPU)

    def search_space(self) -> SearchSpace:
        return SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.space.items()})


def median_arch(space: SearchSpace) -> Arch:
    """The arch with the middle choice everywhere: a third reference point between the extremes."""
    mid = lambda choices: sorted(choices)[len(choices) // 2]  # noqa: E731
    n = space.n_stages * space.max_depth
    return Arch(depths=(mid(space.depth_choices),) * space.n_stages,
                kernels=(mid(space.kernel_choices),) * n, expands=(mid(space.expand_choices),) * n)


class SupernetTrainer:
    def __init__(self, dataset: MedDataset, cfg: SupernetConfig, device: str | None = None):
        self.ranks = distributed.ranks()
        self.ds, self.cfg = dataset, cfg
        self.device = resolve_device(distributed.device_for(device or cfg.device))
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        spec = dataset.spec
        self.space = cfg.search_space()
        torch.manual_seed(cfg.seed)
        self.net = Supernet(self.space, spec.channels, spec.num_classes, spec.image_size).to(self.device)
        self.net.dataset = dataset_info(spec)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.steps_per_epoch = math.ceil(self._epoch_images() / cfg.batch_size)
        self.opt = self._optimizer()
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * self.steps_per_epoch),
            pct_start=min(0.3, 1 / max(cfg.epochs, 1)), anneal_strategy="cos",
            cycle_momentum=False, div_factor=10, final_div_factor=100)
        # A fixed, seeded train subset: BN statistics for every eval are re-estimated on it.
        rng = np.random.default_rng(cfg.seed)
        n_train = spec.splits["train"]
        self.recalib_idx = np.sort(rng.choice(n_train, min(cfg.recalib_images, n_train), replace=False))
        # The per-epoch curve only has to show the trend; scoring a whole val split twice an epoch cost
        # minutes of the demo (OrganAMNIST: 6,491 images). The final scores use everything.
        rng = np.random.default_rng([cfg.seed, 1])
        self.monitor = {"recalib": self.recalib_idx[seeded_subset(len(self.recalib_idx), cfg.monitor_images, rng)],
                        "val": seeded_subset(spec.splits["val"], cfg.monitor_images, rng)}

    def _epoch_images(self) -> int:
        n = self.ds.spec.splits["train"]
        return min(n, self.cfg.max_train_per_epoch) if self.cfg.max_train_per_epoch else n

    def _optimizer(self) -> torch.optim.Optimizer:
        decay = [p for n, p in self.net.named_parameters() if p.ndim > 1 and "transform" not in n]
        no_decay = [p for n, p in self.net.named_parameters() if not (p.ndim > 1 and "transform" not in n)]
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if self.cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=self.cfg.lr)
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum, nesterov=True)
        raise ValueError(f"unknown optimizer {self.cfg.optimizer!r}: use sgd or adamw")

    def _kw(self) -> dict:
        spec = self.ds.spec
        return {"channels": spec.channels, "size": spec.image_size, "device": self.device,
                "channels_last": self.cfg.channels_last}

    # -- evaluation -------------------------------------------------------------------------
    def score_arch(self, arch: Arch, splits: tuple[str, ...] = ("val",), monitor: bool = False) -> dict[str, float]:
        """Scores of `arch` extracted from the supernet, after BatchNorm recalibration; `monitor`: on the
        per-epoch subsets (the supernet itself is left untouched either way)."""
        net = self.net.extract(arch)
        recalib = self.monitor["recalib"] if monitor else self.recalib_idx
        images = self.ds.images("train")[recalib]
        recalibrate_bn(net, (x for x, _ in iterate(images, None, self.cfg.batch_size, **self._kw())))
        out = {}
        for split in splits:
            rows = self.monitor[split] if monitor else slice(None)
            logits = predict(net, self.ds.images(split)[rows], self.cfg.eval_batch_size, **self._kw())
            for k, v in evaluate_scores(self.ds.labels(split)[rows], logits, self.ds.spec.task).items():
                out[f"{split}_{k}"] = v
        return out

    # -- training ---------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> float:
        cfg, task = self.cfg, self.ds.spec.task
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(self.ds.spec.splits["train"])[: self._epoch_images()]
        sandwich = epoch >= cfg.warmup_epochs
        largest, smallest = self.space.largest(), self.space.smallest()
        self.net.train()
        total, seen = 0.0, 0
        bar = tqdm(self._batches(order), total=self.steps_per_epoch,
                   desc=f"{self.ds.spec.name} epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not self.ranks.main, mininterval=2.0 if sys.stderr.isatty() else 30.0)
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.amp)
        for x, y, weight in bar:
            # `weight`: this rank's share of the batch, so the summed gradients are the batch mean's.
            self.opt.zero_grad(set_to_none=True)
            self.net.set_active(largest)
            with autocast:
                logits = self.net(x)
                loss = task_loss(logits, y, task, cfg.label_smoothing)
            self.scaler.scale(loss * weight).backward()
            if sandwich:
                teacher = logits.detach()
                others = [smallest] + [self.space.sample(rng) for _ in range(cfg.random_archs)]
                for arch in others:
                    self.net.set_active(arch)
                    with autocast:
                        student = distill_loss(self.net(x), teacher, task)
                    self.scaler.scale(student * weight).backward()
            if self.ranks.world > 1:
                distributed.all_reduce_grads(list(self.net.parameters()))
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            total += loss.item() * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
        self.net.set_active(largest)
        if self.ranks.world > 1:
            total, seen = distributed.all_reduce_sum([total, seen], self.device)
        return total / max(seen, 1)

    def _batches(self, order: np.ndarray):
        """(images, labels, share of the batch) of this rank for each batch of `order`."""
        images, labels = self.ds.images("train"), self.ds.labels("train")
        r = self.ranks
        if r.world == 1:
            for x, y in iterate(images, labels, self.cfg.batch_size, order=order, **self._kw()):
                yield x, y, 1.0
            return
        for start in range(0, len(order), self.cfg.batch_size):
            batch = order[start:start + self.cfg.batch_size]
            mine = batch[r.rank::r.world]
            if len(mine) == 0:  # a last batch smaller than the world: this rank only joins the all-reduce
                mine = batch[:1]
                weight = 0.0
            else:
                weight = len(mine) / len(batch)
            for x, y in iterate(images, labels, len(mine), order=mine, **self._kw()):
                yield x, y, weight

    def fit(self, out_path: str | Path, on_epoch: Callable[[int, dict], None] | None = None) -> dict:
        """Train (or resume), write the checkpoint to `out_path` and return the training summary."""
        out_path = Path(out_path)
        resume_path = out_path.with_name(out_path.name.replace(".pt", "") + ".resume.pt")
        start, history = self._resume(resume_path)
        cfg = self.cfg
        t0 = time.time()
        for epoch in range(start, cfg.epochs):
            t_epoch = time.time()
            train_loss = self._train_epoch(epoch)
            train_seconds = time.time() - t_epoch
            if not self.ranks.main:
                continue
            metrics = {"train_loss": train_loss, "lr": self.sched.get_last_lr()[0],
                       "train_images_per_s": self._epoch_images() / train_seconds}
            for tag, arch in (("largest", self.space.largest()), ("smallest", self.space.smallest())):
                for k, v in self.score_arch(arch, monitor=True).items():
                    metrics[f"{k}_{tag}"] = v
            metrics["epoch_seconds"] = time.time() - t_epoch
            history.append(metrics)
            log.info("%s epoch %d/%d: loss %.4f, val acc largest %.4f smallest %.4f (%.0f s)",
                     self.ds.spec.name, epoch + 1, cfg.epochs, train_loss, metrics["val_acc_largest"],
                     metrics["val_acc_smallest"], metrics["epoch_seconds"])
            self._save_resume(resume_path, epoch + 1, history)
            if on_epoch:
                on_epoch(epoch, metrics)
        if not self.ranks.main:
            return {}
        summary = self._summary(history, time.time() - t0, resumed_from=start)
        save_supernet(out_path, self.net.cpu(), self.ds.spec, summary)
        self.net.to(self.device)
        resume_path.unlink(missing_ok=True)
        return summary

    def _summary(self, history: list[dict], seconds: float, resumed_from: int) -> dict:
        final = {}
        for tag, arch in (("largest", self.space.largest()), ("median", median_arch(self.space)),
                          ("smallest", self.space.smallest())):
            for k, v in self.score_arch(arch, ("val", "test")).items():
                final[f"{k}_{tag}"] = v
        return {"config": asdict(self.cfg), "history": history, "final": final,
                "train_seconds": seconds, "resumed_from_epoch": resumed_from,
                "device": str(self.device), "world_size": self.ranks.world, "amp": self.amp,
                "torch": str(torch.__version__)}

    def _save_resume(self, path: Path, epochs_done: int, history: list[dict]) -> None:
        from mednns.utils.io import atomic_path

        state = {"epochs_done": epochs_done, "config": asdict(self.cfg), "history": history,
                 "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _resume(self, path: Path) -> tuple[int, list[dict]]:
        # Rank 0 reads the file and hands it to the others: ranks on other nodes need not see it.
        state = self._read_resume(path) if self.ranks.main else None
        if self.ranks.world > 1:
            state = distributed.broadcast(state)
        if state is None:
            return 0, []
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if state["scaler"] and self.amp:  # empty when saved where CUDA was missing and amp fell off
            self.scaler.load_state_dict(state["scaler"])
        log.info("resuming %s after epoch %d", self.ds.spec.name, state["epochs_done"])
        return state["epochs_done"], list(state["history"])

    def _read_resume(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged resume file only costs the epochs it held
            log.warning("%s: unreadable resume state (%s); starting over", path, e)
            return None
        if state.get("config") != asdict(self.cfg):
            log.info("%s: saved for other settings; starting over", path)
            return None
        return state
