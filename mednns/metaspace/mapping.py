"""A 2-D map of the meta-space: datasets and zoo models in one picture, models coloured by score.

Both kinds of embedding are L2-normalised first, because the contrastive loss aligns them by cosine;
then a PCA (deterministic, unlike t-SNE, so the plot only changes when the meta-space does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from mednns.utils.io import atomic_path
from mednns.metaspace.features import DatasetFeatures
from mednns.metaspace.model import MetaSpace
from mednns.metaspace.train import SCORE


def model_scores(zoo: pd.DataFrame, candidates: pd.DataFrame) -> np.ndarray:
    """Mean over targets of each model's transfer score z-scored within its target (NaN if unmeasured)."""
    z = zoo[zoo[SCORE].notna()].copy()
    g = z.groupby("target_dataset")[SCORE]
    z["z"] = (z[SCORE] - g.transform("mean")) / g.transform("std").clip(lower=1e-3)
    mean = z.groupby(["source_dataset", "arch_id"]).z.mean()
    keys = list(zip(candidates.source_dataset, candidates.arch_id))
    return np.array([mean.get(k, np.nan) for k in keys], dtype=np.float64)


def metaspace_map(ms: MetaSpace, features: dict[str, DatasetFeatures], zoo: pd.DataFrame) -> pd.DataFrame:
    """Points: kind (dataset/model), name, source_dataset, x, y, score."""
    names = sorted(features)
    zd = np.stack([ms.embed_dataset(features[n]) for n in names])
    zm = ms.model_codes().numpy()
    both = np.concatenate([zd, zm])
    both = both / np.linalg.norm(both, axis=1, keepdims=True).clip(1e-9)
    xy = PCA(n_components=2, svd_solver="full").fit_transform(both) if len(both) > 2 else np.zeros((len(both), 2))
    c = ms.candidates
    points = pd.DataFrame({
        "kind": ["dataset"] * len(names) + ["model"] * len(c),
        "name": names + list(c.arch_id),
        "source_dataset": names + list(c.source_dataset),
        "x": xy[:, 0], "y": xy[:, 1],
        "score": np.concatenate([np.full(len(names), np.nan), model_scores(zoo, c)]),
    })
    return points


def write_map(points: pd.DataFrame, csv_path: str | Path, png_path: str | Path | None = None) -> None:
    with atomic_path(csv_path) as tmp:
        points.to_csv(tmp, index=False, float_format="%.5f")
    if png_path is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the CSV (a DVC plot) is the map; the picture is a convenience
        return
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    m, d = points[points.kind == "model"], points[points.kind == "dataset"]
    sc = ax.scatter(m.x, m.y, c=m.score, cmap="viridis", s=10, alpha=0.8, linewidths=0)
    fig.colorbar(sc, ax=ax, label="mean normalised transfer score")
    ax.scatter(d.x, d.y, marker="*", s=220, c="crimson", edgecolors="black", linewidths=0.6, label="dataset")
    for row in d.itertuples():
        ax.annotate(row.name, (row.x, row.y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("meta-space: datasets (stars) and zoo models")
    ax.legend(loc="best")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
