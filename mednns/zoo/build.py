"""Building one supernet's zoo table, in shards, so an interrupted build resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mednns.nn.checkpoint import load_supernet
from mednns.data.npz import MedDataset
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path, sha256_file
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


def build_zoo(checkpoint: str | Path, source: MedDataset, targets: list[MedDataset], out: str | Path,
              cfg: ZooConfig) -> pd.DataFrame:
    """Score `cfg.num_archs` archs of the supernet in `checkpoint`; write the table to `out` (parquet) and
    the subnets' recalibrated BatchNorm statistics beside it (`bn_stats_path(out)`)."""
    out = Path(out)
    device = resolve_device(cfg.device)
    supernet, meta = load_supernet(checkpoint, device=device)
    if meta["spec"].name != source.spec.name:
        raise MedNNSError(f"{checkpoint}: supernet of {meta['spec'].name}, not of {source.spec.name}")
    targets = [t for t in targets if t.spec.name != source.spec.name]
    archs = sample_unique(supernet.space, cfg.num_archs, cfg.seed)
    ids = [a.arch_id for a in archs]
    with_transfer = transfer_subset(ids, cfg.transfer_per_dataset, cfg.seed)
    target_names = [t.spec.name for t in targets]

    # Shards of a build are only reused by a build with the same inputs and settings.
    key = json.dumps({"cfg": asdict(cfg), "ckpt": sha256_file(checkpoint), "targets": target_names,
                      "torch": str(torch.__version__)}, sort_keys=True)
    work = out.parent / ".build" / f"{source.spec.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    chunks = [archs[i:i + cfg.shard_size] for i in range(0, len(archs), cfg.shard_size)]
    shard = lambda i: work / f"shard-{i:05d}.parquet"  # noqa: E731 - written last: it marks a shard done
    todo = [i for i in range(len(chunks)) if not shard(i).exists()]
    if len(todo) < len(chunks):
        log.info("%s: resuming zoo build, %d of %d shards already scored", source.spec.name,
                 len(chunks) - len(todo), len(chunks))

    scorer = SubnetScorer(supernet, source, targets, cfg.scoring(), device=device)
    bar = tqdm(total=sum(len(chunks[i]) for i in todo), desc=f"zoo {source.spec.name}", unit="subnet",
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    for i in todo:
        rows, stats = [], {}
        for arch in chunks[i]:
            arch_rows, stats[arch.arch_id] = scorer.score(arch, target_names if arch.arch_id in with_transfer else [])
            rows.extend(arch_rows)
            bar.update(1)
        BNStats(source.spec.name, scorer.recalibration, stats).save(bn_stats_path(shard(i)))
        with atomic_path(shard(i)) as tmp:
            pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(tmp, index=False)
    bar.close()

    table = pd.concat([pd.read_parquet(shard(i)) for i in range(len(chunks))], ignore_index=True)
    BNStats.merge([BNStats.load(bn_stats_path(shard(i))) for i in range(len(chunks))]).save(bn_stats_path(out))
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s: zoo of %d archs, %d rows -> %s (+ %s)", source.spec.name, len(archs), len(table), out,
             bn_stats_path(out).name)
    return table
