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


def tiny_selection_space(root: Path) -> tuple[Path, Path]:
    """A real, tiny meta-space and the supernets it ranks (`root/metaspace`, `root/supernets/<source>.pt`):
    two supernets trained one epoch on 16 px synthetic data, their zoos scored with a transfer probe on
    each other, features and a meta-space trained for a few steps. Enough for `mednns select` to run."""
    from conftest import tiny_config, tiny_dataset
    from mednns.metaspace import FeatureConfig, MetaSpaceConfig, train_metaspace
    from mednns.metaspace.features import features_of_images
    from mednns.train.supernet import SupernetTrainer
    from mednns.zoo import ZooConfig, build_zoo

    supernets = root / "supernets"
    datasets = [tiny_dataset(classes=3, name="srca", seed=0),
                tiny_dataset(task="binary", classes=2, channels=3, name="srcb", seed=1)]
    zoo_cfg = ZooConfig(num_archs=3, transfer_per_dataset=3, shard_size=3, recalib_images=32, recalib_batch=16,
                        eval_batch=64, max_eval_images=0, probe_train_images=48, probe_val_images=32,
                        probe_input_images=2, latency_runs=1)
    tables = []
    for ds in datasets:
        ckpt = supernets / f"{ds.spec.name}.pt"
        SupernetTrainer(ds, tiny_config(epochs=1)).fit(ckpt)
        others = [o for o in datasets if o is not ds]
        tables.append(build_zoo(ckpt, ds, others, root / "zoo" / f"{ds.spec.name}.parquet", zoo_cfg))
    features_cfg = FeatureConfig(sample_images=48, image_size=16)
    features = {ds.spec.name: features_of_images(ds.images("train"), features_cfg, ds.spec.name) for ds in datasets}
    ms_cfg = MetaSpaceConfig(dim=16, hidden=32, heads=2, steps=10, set_min=8, set_max=24, rows_per_dataset=3,
                             top_models=2, query_images=40)
    ms, _ = train_metaspace(pd.concat(tables, ignore_index=True), features, ms_cfg, features_cfg, progress=False)
    return ms.save(root / "metaspace"), supernets
