"""Scoring one subnet: extract, recalibrate BatchNorm, score on its own dataset, probe transfer to others.

Everything that does not depend on the arch (image tensors, probe input, train subsets) is made once
per supernet, so the per-subnet cost is the extraction plus the forward passes themselves.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mednns.nn.bn import fold_bn
from mednns.data.npz import MedDataset
from mednns.data.spec import Task
from mednns.data.tensors import to_tensor
from mednns.train.heads import fit_logistic_head
from mednns.train.metrics import evaluate_scores
from mednns.nn.space import Arch
from mednns.nn.supernet import StaticNet, Supernet
from mednns.data.subsets import seeded_subset
from mednns.zoo.store import Recalibration, bn_state


@dataclass(frozen=True)
class ScoringConfig:
    """How each subnet is scored (`params.yaml: zoo`, whose values the defaults are)."""

    recalib_images: int = 256          # BatchNorm recalibration: seeded train subset of the source
    recalib_batch: int = 64
    eval_batch: int = 64
    max_eval_images: int = 400         # per own split; 0 scores the whole split
    probe_train_images: int = 512      # transfer probe: target train subset the head is fit on
    probe_val_images: int = 400        # transfer probe: target val subset it is scored on
    probe_input_images: int = 16       # fixed Gaussian input for the functional embedding
    latency_runs: int = 10
    seed: int = 0
    channels_last: bool = True

    def recalibration(self) -> Recalibration:
        return Recalibration(self.recalib_images, self.seed, self.recalib_batch)

    def own_subsets(self, splits: dict[str, int], rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """The source images a subnet is recalibrated on ("train") and scored on ("val", "test"):
        one seeded generator's first three draws, so anyone can score the very same images."""
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        out = {"train": seeded_subset(splits["train"], self.recalib_images, rng)}
        for split in ("val", "test"):
            out[split] = seeded_subset(splits[split], self.max_eval_images, rng)
        return out


@dataclass
class _ProbeData:
    task: Task
    num_classes: int
    x_train: torch.Tensor
    y_train: np.ndarray
    x_val: torch.Tensor
    y_val: np.ndarray


class SubnetScorer:
    """Scores archs of one supernet on its own dataset and, through the transfer probe, on targets."""

    def __init__(self, supernet: Supernet, source: MedDataset, targets: list[MedDataset],
                 cfg: ScoringConfig, device: str | torch.device = "cpu"):
        self.net, self.source, self.cfg, self.device = supernet.eval(), source, cfg, torch.device(device)
        spec = source.spec
        self._fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.recalibration = cfg.recalibration()
        rng = np.random.default_rng(cfg.seed)
        subsets = cfg.own_subsets(spec.splits, rng)   # then the probes' subsets, from the same generator
        self.recalib_idx = subsets["train"]
        self.recalib_x = self._tensor(source.images("train")[self.recalib_idx])
        self.own: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
        for split in ("val", "test"):
            idx = subsets[split]
            self.own[split] = (self._tensor(source.images(split)[idx]), source.labels(split)[idx])
        self.eval_images = len(self.own["val"][1])
        self.probes = {t.spec.name: self._probe_data(t, rng) for t in targets if t.spec.name != spec.name}
        gen = torch.Generator().manual_seed(cfg.seed)
        self.probe_input = torch.randn(cfg.probe_input_images, spec.channels, spec.image_size,
                                       spec.image_size, generator=gen).to(self.device, memory_format=self._fmt)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        spec = self.source.spec
        x = to_tensor(images, channels=spec.channels, size=spec.image_size)
        return x.to(self.device, memory_format=self._fmt)

    def _probe_data(self, ds: MedDataset, rng: np.random.Generator) -> _ProbeData:
        tr = seeded_subset(ds.spec.splits["train"], self.cfg.probe_train_images, rng)
        va = seeded_subset(ds.spec.splits["val"], self.cfg.probe_val_images, rng)
        # Target images are fed at the source's channels and resolution, as the subnet expects.
        return _ProbeData(ds.spec.task, ds.spec.num_classes, self._tensor(ds.images("train")[tr]),
                          ds.labels("train")[tr], self._tensor(ds.images("val")[va]), ds.labels("val")[va])

    # -- the pieces ---------------------------------------------------------------------------
    def extract(self, arch: Arch) -> StaticNet:
        net = self.net.extract(arch).to(self.device, memory_format=self._fmt)
        return self.recalibration.apply(net, self.recalib_x)

    def _features(self, net: StaticNet, x: torch.Tensor) -> torch.Tensor:
        b = self.cfg.eval_batch
        return torch.cat([net.forward_features(x[i:i + b]) for i in range(0, len(x), b)]).float()

    @staticmethod
    def fit_probe(train_feats: np.ndarray, y_train: np.ndarray, val_feats: np.ndarray, y_val: np.ndarray,
                  task: Task, num_classes: int) -> dict[str, float]:
        """Logistic-regression head on frozen features; MedMNIST accuracy and AUC on val."""
        weight, bias = fit_logistic_head(train_feats, y_train, task, num_classes)
        return evaluate_scores(y_val, val_feats @ weight.T + bias, task)

    def macs(self, net: StaticNet) -> int:
        with FlopCounterMode(display=False) as counter:
            net(self.probe_input[:1])
        return int(counter.get_total_flops() // 2)

    def latency_ms(self, net: StaticNet) -> float:
        x = self.probe_input[:1]
        for _ in range(2):
            net(x)
        times = []
        for _ in range(self.cfg.latency_runs):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times)

    # -- one subnet ---------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, arch: Arch, targets: list[str]) -> tuple[list[dict], tuple[torch.Tensor, torch.Tensor]]:
        """Rows of the zoo table for `arch` (its own target first, then each of `targets`), and its
        recalibrated BatchNorm statistics (`bn_state`): what every later load of the subnet applies."""
        net = self.extract(arch)
        stats = bn_state(net)
        own_task, source = self.source.spec.task, self.source.spec.name
        row = {"source_dataset": source, "arch_id": arch.arch_id, "arch_json": arch.to_json(),
               "encoding": self.net.space.encode(arch).tolist(),
               "params": sum(p.numel() for p in net.parameters()), "macs": self.macs(net)}
        # Every pass from here on is in eval mode; latency too is the folded net's, as any runtime
        # (onnxruntime included) folds BatchNorm before running a model.
        net = fold_bn(net, inplace=True)
        row.update({"latency_ms": self.latency_ms(net), "recalib_images": len(self.recalib_idx),
                    "recalib_seed": self.cfg.seed, "recalib_batch": self.cfg.recalib_batch,
                    "eval_images": self.eval_images})
        feats = self._features(net, self.probe_input)
        row["embedding"] = torch.cat([feats.mean(0), feats.std(0)]).tolist()
        for split, (x, y) in self.own.items():
            scores = evaluate_scores(y, net.classifier(self._features(net, x)), own_task)
            row[f"{split}_acc"], row[f"{split}_auc"] = scores["acc"], scores["auc"]
        # The own row has the subnet's own head; a probe there would cost a fifth of the forward passes
        # for a score nothing needs (a query is always a dataset no supernet was trained on).
        rows = [{**row, "target_dataset": source, "transfer_acc": float("nan"), "transfer_auc": float("nan")}]
        cross = {k: float("nan") for k in ("val_acc", "val_auc", "test_acc", "test_auc")}
        for target in dict.fromkeys(t for t in targets if t != source):
            p = self.probes[target]
            probe = self.fit_probe(self._features(net, p.x_train).cpu().numpy(), p.y_train,
                                   self._features(net, p.x_val).cpu().numpy(), p.y_val, p.task, p.num_classes)
            rows.append({**row, **cross, "target_dataset": target, "transfer_acc": probe["acc"],
                         "transfer_auc": probe["auc"]})
        return rows, stats
