"""Seeded subsets of a split: the one rule every sampled subset follows, so anyone can draw the same one."""

from __future__ import annotations

import numpy as np

from mednns.data.npz import MedDataset
from mednns.data.spec import SPLITS, Task


def seeded_subset(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of k of n items drawn by `rng` (all n when k is 0 or >= n)."""
    return np.arange(n) if not k or k >= n else np.sort(rng.choice(n, k, replace=False))


def stratified_subset(labels: np.ndarray, k: int, rng: np.random.Generator, task: Task) -> np.ndarray:
    """Sorted indices of about k items with each class in its share (at least one of each present
    class); multi-label tasks fall back to a plain seeded subset."""
    n = len(labels)
    if not k or k >= n:
        return np.arange(n)
    if task is Task.MULTI_LABEL:
        return seeded_subset(n, k, rng)
    y = labels[:, 0]
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        take = max(1, int(round(k * len(members) / n)))
        picked.append(rng.choice(members, min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def with_subsets(ds: MedDataset, **indices: np.ndarray) -> MedDataset:
    """`ds` with the named splits cut to the given indices (`with_subsets(ds, train=idx)`: the low-data
    regime; the other splits as they are)."""
    from dataclasses import replace

    images = {s: ds.images(s)[indices[s]] if s in indices else ds.images(s) for s in SPLITS}
    labels = {s: ds.labels(s)[indices[s]] if s in indices else ds.labels(s) for s in SPLITS}
    spec = replace(ds.spec, splits={s: int(len(images[s])) for s in SPLITS})
    return MedDataset(spec, images, labels)
