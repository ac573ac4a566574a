"""The one way to get a zoo subnet: its supernet (loaded once), its arch, and the BatchNorm statistics
the zoo re-estimated for it before scoring it.

A subnet sliced out of a supernet inherits running statistics averaged over every arch the supernet
trained, which do not fit it (test accuracy can fall by 20 points). The zoo recalibrates each subnet
on a seeded subset of its source's train split (`Recalibration`), scores it, and keeps the statistics
(`BNStats`, a file beside the zoo table). Every later way of getting the subnet (the evaluation,
`registry.load_model`, the MLflow pyfunc, `mednns export`, the selector) applies those statistics and
so gets the network that was scored, without touching the training data.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from mednns.data.subsets import seeded_subset
from mednns.nn.bn import recalibrate_bn
from mednns.nn.checkpoint import load_network, load_supernet
from mednns.nn.space import Arch
from mednns.nn.supernet import StaticNet, Supernet
from mednns.train.device import resolve_device
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path

log = logging.getLogger(__name__)

BN_FORMAT = "mednns.bnstats/1"


@dataclass(frozen=True)
class Recalibration:
    """How the zoo re-estimates a subnet's BatchNorm statistics: `images` of its source's train split
    (the first draw of a generator seeded with `seed`), fed in batches of `batch` in training mode,
    averaged exactly (cumulative average: with it, the batch size changes the running variance)."""

    images: int
    seed: int
    batch: int

    def indices(self, n_train: int) -> np.ndarray:
        return seeded_subset(n_train, self.images, np.random.default_rng(self.seed))

    def apply(self, net: nn.Module, x: torch.Tensor) -> nn.Module:
        """Recalibrate `net` on `x`, the recalibration images already as the net takes them."""
        b = self.batch
        return recalibrate_bn(net, (x[i:i + b] for i in range(0, len(x), b)))

    def to_dict(self) -> dict:
        return asdict(self)


def _bns(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_state(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Every BatchNorm's running mean and variance, concatenated in module order (float32, CPU)."""
    bns = _bns(net)
    return (torch.cat([m.running_mean.detach().float().cpu() for m in bns]),
            torch.cat([m.running_var.detach().float().cpu() for m in bns]))


@torch.no_grad()
def load_bn_state(net: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> nn.Module:
    bns = _bns(net)
    total = sum(m.num_features for m in bns)
    if mean.numel() != total or var.numel() != total:
        raise MedNNSError(f"BatchNorm statistics of {mean.numel()} channels for a network with {total}: "
                          "they belong to another arch or search space; rebuild the zoo")
    start = 0
    for m in bns:
        n = m.num_features
        m.running_mean.copy_(mean[start:start + n])
        m.running_var.copy_(var[start:start + n])
        start += n
    return net


def bn_stats_path(zoo_table: str | Path) -> Path:
    """`zoo/<dataset>.parquet` -> `zoo/<dataset>.bn.pt`: the statistics travel with their table."""
    zoo_table = Path(zoo_table)
    return zoo_table.with_name(zoo_table.stem + ".bn.pt")


class BNStats:
    """The recalibrated BatchNorm statistics of every subnet of one zoo table, by arch_id."""

    def __init__(self, source: str, recalibration: Recalibration, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        self.source, self.recalibration, self.stats = source, recalibration, dict(stats)

    def __getitem__(self, arch_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return self.stats[arch_id]
        except KeyError:
            raise MedNNSError(f"no recalibrated BatchNorm statistics for arch {arch_id} in the {self.source} "
                              "zoo; rebuild it (`dvc repro build_zoo`)") from None

    def __len__(self) -> int:
        return len(self.stats)

    def digest(self, arch_id: str) -> str:
        """A short content hash of one subnet's statistics: a registry version is one exact network."""
        import hashlib

        mean, var = self[arch_id]
        h = hashlib.sha1(mean.numpy().tobytes())
        h.update(var.numpy().tobytes())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> None:
        payload = {"format": BN_FORMAT, "source": self.source, "recalibration": self.recalibration.to_dict(),
                   "stats": {a: {"mean": m, "var": v} for a, (m, v) in sorted(self.stats.items())}}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "BNStats":
        path = Path(path)
        if not path.is_file():
            raise MedNNSError(f"{path}: recalibrated BatchNorm statistics not found; run `dvc repro build_zoo` "
                              "or `dvc pull`")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("format") != BN_FORMAT:
                raise ValueError("format")
            stats = {a: (d["mean"], d["var"]) for a, d in payload["stats"].items()}
            return cls(payload["source"], Recalibration(**payload["recalibration"]), stats)
        except Exception:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
            raise MedNNSError(f"{path}: not a MedNNS BatchNorm statistics file ({BN_FORMAT}); "
                              "re-run `dvc repro build_zoo` or `dvc checkout`") from None

    @classmethod
    def merge(cls, parts: list["BNStats"]) -> "BNStats":
        stats = {}
        for p in parts:
            stats.update(p.stats)
        return cls(parts[0].source, parts[0].recalibration, stats)


def _locator(where: str | Path | Callable[[str], Path] | None) -> Callable[[str], Path] | None:
    """A folder of `<name>.pt` files, or a function from a name to a path, as a function."""
    if where is None or callable(where):
        return where
    return lambda name, d=Path(where): d / f"{name}.pt"


class SubnetStore:
    """Supernet checkpoints by source dataset, each loaded once (the `keep` most recent), and the zoo's
    subnets sliced out of them; and the zoo's whole networks (the continually pre-trained one, stage
    `pretrain`) by name.

    `checkpoints` is a folder of `<source>.pt` files or a function from a source name to a checkpoint path
    (the registry resolves files by content hash); `networks` likewise for `<name>.pt` network files.
    """

    def __init__(self, checkpoints: str | Path | Callable[[str], Path], device: str | torch.device = "cpu",
                 keep: int = 4, networks: str | Path | Callable[[str], Path] | None = None):
        self._locate, self._locate_network = _locator(checkpoints), _locator(networks)
        self.device, self.keep = resolve_device(str(device)), keep
        self._nets: OrderedDict[str, tuple[Supernet, dict]] = OrderedDict()
        self._networks: dict[str, tuple[nn.Module, dict]] = {}

    def network(self, name: str) -> tuple[nn.Module, dict]:
        """(a copy of the zoo's network `name`, its training summary); the file is read once."""
        import copy

        if name not in self._networks:
            if self._locate_network is None:
                raise MedNNSError(f"the zoo network {name} needs the folder of the zoo's networks "
                                  "(models/pretrained, `dvc repro pretrain`); or leave it out (`--zoo-only`)")
            self._networks[name] = load_network(self._locate_network(name))
        net, summary = self._networks[name]
        return copy.deepcopy(net).to(self.device), summary

    def checkpoint(self, source: str) -> Path:
        return Path(self._locate(source))

    def load(self, source: str) -> tuple[Supernet, dict]:
        """(supernet, checkpoint metadata) of `source`."""
        if source in self._nets:
            self._nets.move_to_end(source)
        else:
            if len(self._nets) >= self.keep:
                self._nets.popitem(last=False)
            self._nets[source] = load_supernet(self.checkpoint(source), device=self.device)
        return self._nets[source]

    def supernet(self, source: str) -> Supernet:
        return self.load(source)[0]

    def extract(self, source: str, arch: Arch | str) -> StaticNet:
        """`arch` of `source`'s supernet with the supernet's own BatchNorm statistics (eval mode)."""
        try:
            arch = Arch.from_json(arch) if isinstance(arch, str) else arch
        except (ValueError, KeyError, TypeError) as e:  # ValueError includes a JSON error
            raise MedNNSError(f"arch {str(arch)[:80]!r} of {source}: not an arch of the MBConv space ({e}); the "
                              "meta-space or zoo table is damaged or of another version: re-run its stage") from None
        supernet = self.supernet(source)
        try:
            supernet.space.validate(arch)
        except ValueError as e:
            raise MedNNSError(f"arch {arch.arch_id} is not in the search space of {self.checkpoint(source)} "
                              f"({e}); the meta-space and the supernets come from different zoos") from None
        return supernet.extract(arch).eval()

    def subnet(self, source: str, arch: Arch | str, bn: BNStats | None) -> StaticNet:
        """The scored zoo subnet: `extract` with the zoo's recalibrated statistics from `bn` applied."""
        net = self.extract(source, arch)
        if bn is None:
            return net
        load_bn_state(net, *bn[net.arch.arch_id])
        net.cfg = replace(net.cfg, recalibration=bn.recalibration.to_dict())
        return net

    def __iter__(self) -> Iterator[str]:
        return iter(self._nets)
