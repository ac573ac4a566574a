"""Synthetic zoos for the registry tests and benchmark: a checkpoint of an untrained supernet, a zoo
table of distinct archs with random scores, and BatchNorm statistics for each (no scoring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mednns.data.spec import DatasetSpec
from mednns.nn.checkpoint import load_supernet, save_supernet
from mednns.nn.space import SearchSpace
from mednns.nn.supernet import Supernet
from mednns.zoo.sampling import sample_unique
from mednns.zoo.schema import COLUMNS
from mednns.zoo.store import BNStats, Recalibration, bn_state, bn_stats_path


def random_supernet(path: Path, spec: DatasetSpec, space: SearchSpace, seed: int = 0) -> Path:
    """A checkpoint of an untrained supernet: registration and loading need weights, not skill."""
    torch.manual_seed(seed)
    net = Supernet(space, spec.channels, spec.num_classes, spec.image_size)
    save_supernet(path, net.eval(), spec, {"final": {"val_acc": 0.5, "seed": seed}})
    return path


def synthetic_zoo(ckpt: Path, n: int, out: Path | None = None, seed: int = 0, loadable: bool | int = True) -> pd.DataFrame:
    """`n` distinct archs of the checkpoint's space with random scores; with `out`, the table is written
    there and random "recalibrated" statistics beside it (unlike the supernet's: loading must apply them).
    `loadable=False` writes one-value statistics instead: registration works, loading does not; an int k
    makes only the first k archs loadable (the registry benchmark registers 10,000 subnets and loads a few)."""
    net, meta = load_supernet(ckpt)
    rng = np.random.default_rng(seed)
    archs = sample_unique(net.space, n, seed)
    rows = [dict(source_dataset=meta["spec"].name, target_dataset=meta["spec"].name, arch_id=a.arch_id,
                 arch_json=a.to_json(), encoding=[0.0], embedding=[0.0], params=int(rng.integers(100, 10 ** 6)),
                 macs=int(rng.integers(1000, 10 ** 7)), latency_ms=float(rng.random()), val_acc=float(rng.random()),
                 val_auc=float(rng.random()), test_acc=float(rng.random()), test_auc=float(rng.random()),
                 transfer_acc=np.nan, transfer_auc=np.nan, recalib_images=64, recalib_seed=0, recalib_batch=16,
                 eval_images=64)
            for a in archs]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if out is not None:
        gen = torch.Generator().manual_seed(seed)
        stats = {}
        for i, a in enumerate(archs):
            real = loadable if isinstance(loadable, bool) else i < loadable
            shape = bn_state(net.extract(a))[0].shape if real else (1,)
            stats[a.arch_id] = (torch.randn(shape, generator=gen) * 0.1, torch.rand(shape, generator=gen) + 0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        BNStats(meta["spec"].name, Recalibration(64, 0, 16), stats).save(bn_stats_path(out))
        table.to_parquet(out, index=False)
    return table
