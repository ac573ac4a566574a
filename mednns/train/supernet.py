"""Supernet training: the largest arch first, then the sandwich rule (largest + smallest + random archs
per step) with in-place distillation from the largest, as BigNAS / Once-for-All do.

Resumable: after every epoch the whole training state goes to `<checkpoint>.resume.pt`; a later call
with the same config continues from there and, because every epoch is seeded by its index, ends with
the same weights as an uninterrupted run.
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
import torch.nn.functional as F
from tqdm.auto import tqdm

from mednns.train.batches import iterate, predict
from mednns.nn.bn import recalibrate_bn
from mednns.nn.checkpoint import dataset_info, save_supernet
from mednns.data.npz import MedDataset
from mednns.data.spec import Task
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
    max_train_per_epoch: int = 8000   # cap on images per epoch, a fresh random subset each epoch (0: all)
    recalib_images: int = 2000        # train images for BatchNorm recalibration before each eval
    eval_batch_size: int = 512
    seed: int = 0
    channels_last: bool = True
    space: dict = field(default_factory=dict)  # SearchSpace overrides; empty for the default space

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
        self.ds, self.cfg, self.device = dataset, cfg, resolve_device(device or cfg.device)
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
    def score_arch(self, arch: Arch, splits: tuple[str, ...] = ("val",)) -> dict[str, float]:
        """Scores of `arch` extracted from the supernet, after BatchNorm recalibration."""
        net = self.net.extract(arch)
        images = self.ds.images("train")[self.recalib_idx]
        recalibrate_bn(net, (x for x, _ in iterate(images, None, self.cfg.batch_size, **self._kw())))
        out = {}
        for split in splits:
            logits = predict(net, self.ds.images(split), self.cfg.eval_batch_size, **self._kw())
            for k, v in evaluate_scores(self.ds.labels(split), logits, self.ds.spec.task).items():
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
        bar = tqdm(iterate(self.ds.images("train"), self.ds.labels("train"), cfg.batch_size,
                           order=order, **self._kw()),
                   total=self.steps_per_epoch, desc=f"{self.ds.spec.name} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, mininterval=2.0 if sys.stderr.isatty() else 30.0)
        for x, y in bar:
            self.opt.zero_grad(set_to_none=True)
            self.net.set_active(largest)
            logits = self.net(x)
            loss = task_loss(logits, y, task, cfg.label_smoothing)
            loss.backward()
            if sandwich:
                teacher = logits.detach()
                others = [smallest] + [self.space.sample(rng) for _ in range(cfg.random_archs)]
                for arch in others:
                    self.net.set_active(arch)
                    distill_loss(self.net(x), teacher, task).backward()
            self.opt.step()
            self.sched.step()
            total += loss.item() * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
        self.net.set_active(largest)
        return total / max(seen, 1)

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
            metrics = {"train_loss": train_loss, "lr": self.sched.get_last_lr()[0]}
            for tag, arch in (("largest", self.space.largest()), ("smallest", self.space.smallest())):
                for k, v in self.score_arch(arch).items():
                    metrics[f"{k}_{tag}"] = v
            metrics["epoch_seconds"] = time.time() - t_epoch
            history.append(metrics)
            log.info("%s epoch %d/%d: loss %.4f, val acc largest %.4f smallest %.4f (%.0f s)",
                     self.ds.spec.name, epoch + 1, cfg.epochs, train_loss, metrics["val_acc_largest"],
                     metrics["val_acc_smallest"], metrics["epoch_seconds"])
            self._save_resume(resume_path, epoch + 1, history)
            if on_epoch:
                on_epoch(epoch, metrics)
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
                "device": str(self.device), "torch": str(torch.__version__)}

    def _save_resume(self, path: Path, epochs_done: int, history: list[dict]) -> None:
        from mednns.utils.io import atomic_path

        state = {"epochs_done": epochs_done, "config": asdict(self.cfg), "history": history,
                 "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _resume(self, path: Path) -> tuple[int, list[dict]]:
        if not path.is_file():
            return 0, []
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # a damaged resume file only costs the epochs it held
            log.warning("%s: unreadable resume state (%s); starting over", path, e)
            return 0, []
        if state.get("config") != asdict(self.cfg):
            log.info("%s: saved for other settings; starting over", path)
            return 0, []
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        log.info("resuming %s after epoch %d", self.ds.spec.name, state["epochs_done"])
        return state["epochs_done"], list(state["history"])
