"""Building one supernet's zoo table, in shards, so an interrupted build resumes where it stopped.

Shards are independent: with `workers > 1` they are Ray tasks (`mednns.utils.parallel.run_tasks`), each
worker process building its scorer (supernet and image tensors) once and reusing it for every shard it
gets. A shard's rows and BatchNorm statistics come back to the driver, which writes the shard atomically
the moment it arrives, so workers need no shared filesystem and a retried task (its worker died) still
gives one shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mednns.nn.checkpoint import load_supernet
from mednns.nn.space import Arch
from mednns.nn.supernet import Supernet
from mednns.data.npz import MedDataset
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path, sha256_file
from mednns.utils.parallel import run_tasks
from mednns.train.device import resolve_device
from mednns.zoo.sampling import sample_unique
from mednns.zoo.schema import COLUMNS
from mednns.zoo.scoring import ScoringConfig, SubnetScorer
from mednns.zoo.store import BNStats, bn_stats_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooConfig(ScoringConfig):
    """`params.yaml: zoo`: how many archs, which get transfer rows, and how they are scored."""

    device: str = "cpu"
    num_archs: int = 100
    transfer_per_dataset: int = 30   # archs (seeded subset, largest and smallest included) probed on every other dataset
    shard_size: int = 10
    workers: int = 1                 # shards scored at once: 1 in this process, more as Ray tasks
    gpus_per_worker: float = 1.0     # on cuda, each worker's share of a GPU (0.25: four per GPU)

    def scoring(self) -> ScoringConfig:
        return ScoringConfig(**{f.name: getattr(self, f.name) for f in fields(ScoringConfig)})


def transfer_subset(arch_ids: list[str], k: int, seed: int) -> set[str]:
    """The archs that get rows on every other dataset: the first two (largest, smallest) + seeded draws."""
    if k >= len(arch_ids):
        return set(arch_ids)
    rest = arch_ids[2:]
    rng = np.random.default_rng([seed, 1])
    picked = rng.choice(len(rest), max(k - 2, 0), replace=False) if rest else []
    return set(arch_ids[:2]) | {rest[i] for i in picked}


# Scheduling knobs: they change how a zoo is computed, not what it holds (shards are reused across them).
_SCHEDULING = ("workers", "gpus_per_worker")
_worker_scorer: dict[str, SubnetScorer] = {}   # one slot per process: the scorer of the build in hand


@dataclass
class ShardJob:
    """Everything a worker needs to score shards of one build, shipped to it once (Ray's object store)."""

    key: str
    supernet: Supernet           # on the CPU; the worker moves it to its device
    source: MedDataset
    targets: list[MedDataset]
    cfg: ScoringConfig
    device: str
    with_transfer: frozenset[str]

    def scorer(self) -> SubnetScorer:
        if self.key not in _worker_scorer:
            _worker_scorer.clear()
            device = resolve_device(self.device)
            _worker_scorer[self.key] = SubnetScorer(self.supernet.to(device), self.source, self.targets, self.cfg,
                                                    device=device)
        return _worker_scorer[self.key]

    def __call__(self, archs: list[Arch]) -> tuple[list[dict], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """One shard: its zoo rows and each arch's recalibrated BatchNorm statistics."""
        scorer, names = self.scorer(), [t.spec.name for t in self.targets]
        rows, stats = [], {}
        for arch in archs:
            arch_rows, stats[arch.arch_id] = scorer.score(arch, names if arch.arch_id in self.with_transfer else [])
            rows.extend(arch_rows)
        return rows, stats


def build_zoo(checkpoint: str | Path, source: MedDataset, targets: list[MedDataset], out: str | Path,
              cfg: ZooConfig) -> pd.DataFrame:
    """Score `cfg.num_archs` archs of the supernet in `checkpoint`; write the table to `out` (parquet) and
    the subnets' recalibrated BatchNorm statistics beside it (`bn_stats_path(out)`)."""
    out = Path(out)
    supernet, meta = load_supernet(checkpoint, device="cpu")
    if meta["spec"].name != source.spec.name:
        raise MedNNSError(f"{checkpoint}: supernet of {meta['spec'].name}, not of {source.spec.name}")
    targets = [t for t in targets if t.spec.name != source.spec.name]
    archs = sample_unique(supernet.space, cfg.num_archs, cfg.seed)
    ids = [a.arch_id for a in archs]
    with_transfer = transfer_subset(ids, cfg.transfer_per_dataset, cfg.seed)
    target_names = [t.spec.name for t in targets]

    # Shards of a build are only reused by a build with the same inputs and settings.
    settings = {k: v for k, v in asdict(cfg).items() if k not in _SCHEDULING}
    key = json.dumps({"cfg": settings, "ckpt": sha256_file(checkpoint), "targets": target_names,
                      "torch": str(torch.__version__)}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    work = out.parent / ".build" / f"{source.spec.name}-{digest}"
    work.mkdir(parents=True, exist_ok=True)
    chunks = [archs[i:i + cfg.shard_size] for i in range(0, len(archs), cfg.shard_size)]
    shard = lambda i: work / f"shard-{i:05d}.parquet"  # noqa: E731 - written last: it marks a shard done
    todo = [i for i in range(len(chunks)) if not shard(i).exists()]
    if len(todo) < len(chunks):
        log.info("%s: resuming zoo build, %d of %d shards already scored", source.spec.name,
                 len(chunks) - len(todo), len(chunks))

    job = ShardJob(digest, supernet, source, targets, cfg.scoring(), cfg.device, frozenset(with_transfer))
    recalibration = cfg.recalibration()

    def write_shard(n: int, result: tuple[list[dict], dict]) -> None:
        rows, stats = result
        BNStats(source.spec.name, recalibration, stats).save(bn_stats_path(shard(todo[n])))
        with atomic_path(shard(todo[n])) as tmp:
            pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(tmp, index=False)

    on_gpu = cfg.device.startswith("cuda") and torch.cuda.is_available()
    try:
        run_tasks(job, [chunks[i] for i in todo], cfg.workers, num_cpus=1,
                  num_gpus=cfg.gpus_per_worker if on_gpu else 0, on_result=write_shard,
                  desc=f"zoo {source.spec.name} (shards of {cfg.shard_size} subnets)", unit="shard")
    finally:
        _worker_scorer.clear()

    table = pd.concat([pd.read_parquet(shard(i)) for i in range(len(chunks))], ignore_index=True)
    BNStats.merge([BNStats.load(bn_stats_path(shard(i))) for i in range(len(chunks))]).save(bn_stats_path(out))
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s: zoo of %d archs, %d rows -> %s (+ %s)", source.spec.name, len(archs), len(table), out,
             bn_stats_path(out).name)
    return table
