"""The zoo table: one row per (source dataset, arch, target dataset).

| column | meaning |
| --- | --- |
| source_dataset | dataset whose supernet the subnet comes from |
| target_dataset | dataset this row scores the subnet on (the source itself, or another zoo dataset) |
| arch_id | stable 12-hex id of the arch (`Arch.arch_id`) |
| arch_json | canonical JSON of the arch |
| encoding | fixed-length numeric arch encoding (`SearchSpace.encode`), list of float32 |
| embedding | functional embedding: mean and std of the subnet's pooled features on a fixed, seeded probe input (TANS-style), list of float32 |
| params | parameters of the static subnet |
| macs | multiply-accumulates of one forward pass at batch 1 (torch.utils.flop_counter, FLOPs / 2) |
| latency_ms | median CPU latency at batch 1 of the static subnet (BatchNorm folded), on the build machine |
| val_acc, val_auc, test_acc, test_auc | the subnet's own head on the source's val / test split (MedMNIST definitions); NaN on rows of other targets |
| transfer_acc, transfer_auc | transfer probe: frozen features, logistic-regression head fit on a seeded subset of the target's train split, scored on a seeded subset of its val split; NaN on the own row (it has val_acc). The meta-space learns from `transfer_acc` (train and val only) |
| recalib_images, recalib_seed, recalib_batch | BatchNorm recalibration settings (`mednns.zoo.store.Recalibration`: seeded train subset of the source, batch size); the statistics themselves are in `<dataset>.bn.pt` beside the table |
| eval_images | images scored per own split (a seeded subset when capped) |
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mednns.utils.errors import MedNNSError

COLUMNS = (
    "source_dataset", "target_dataset", "arch_id", "arch_json", "encoding", "embedding", "params", "macs",
    "latency_ms", "val_acc", "val_auc", "test_acc", "test_auc", "transfer_acc", "transfer_auc",
    "recalib_images", "recalib_seed", "recalib_batch", "eval_images",
)


def read_zoo(paths) -> pd.DataFrame:
    """One or more zoo parquet files as a single table, checked for the documented columns."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise MedNNSError(f"{path}: zoo table not found; run `dvc repro build_zoo` or `dvc pull`")
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise MedNNSError(f"{path}: not a readable parquet table ({type(e).__name__}); re-run "
                              "`dvc repro build_zoo` or `dvc checkout` it") from None
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise MedNNSError(f"{path}: not a zoo table (missing {', '.join(missing)})")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
