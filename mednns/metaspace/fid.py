"""Fréchet distance between datasets' feature distributions (the FID formula on our own features).

`metrics/fid.csv` is written in long form (dataset, reference, fid: one row per ordered pair,
diagonal included) because that is what DVC plots take; `fid_matrix` reads it back square.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2) (Heusel et al. 2017).

    Tr((C1 C2)^1/2) is taken as the sum of square roots of the eigenvalues of C1^1/2 C2 C1^1/2, a
    symmetric PSD matrix with the same eigenvalues as C1 C2: two `eigh` calls instead of a general
    `sqrtm`, and no complex round-off to discard (grey datasets make the covariances singular).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise MedNNSError(f"feature dimensions differ ({mu1.shape} vs {mu2.shape}): features of different extractors")
    # Small matrices: BLAS threads only fight each other.
    with threadpool_limits(1):
        s1 = _psd_sqrt(cov1)
        m = s1 @ cov2 @ s1
        tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean)
    return max(value, 0.0)  # round-off can take identical distributions a hair below zero


def fid_table(stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Long table (dataset, reference, fid) over every ordered pair of `stats` (name -> (mean, cov))."""
    names = sorted(stats)
    rows, done = [], {}
    for a in names:
        for b in names:
            if a == b:
                value = 0.0
            elif (b, a) in done:
                value = done[(b, a)]  # symmetric: computed once
            else:
                value = done[(a, b)] = frechet_distance(*stats[a], *stats[b])
            rows.append({"dataset": a, "reference": b, "fid": value})
    return pd.DataFrame(rows, columns=["dataset", "reference", "fid"])


def fid_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Square matrix (index and columns: dataset names) from the long table."""
    missing = {"dataset", "reference", "fid"} - set(table.columns)
    if missing:
        raise MedNNSError(f"not a FID table (missing {', '.join(sorted(missing))})")
    m = table.pivot(index="dataset", columns="reference", values="fid")
    return m.loc[sorted(m.index), sorted(m.index)]


def write_fid_csv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


def normalised(matrix: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The sub-matrix of `names`, divided by its mean off-diagonal value (scale-free targets)."""
    missing = [n for n in names if n not in matrix.index]
    if missing:
        raise MedNNSError(f"FID matrix has no row for {', '.join(missing)}; re-run `dvc repro fid`")
    m = matrix.loc[names, names].to_numpy(np.float64)
    off = m[~np.eye(len(names), dtype=bool)]
    scale = off.mean() if off.size and off.mean() > 0 else 1.0
    return m / scale
