"""Leave-one-dataset-out evaluation of the meta-space against baselines.

For each dataset D: a meta-space is trained without any of D's rows (D is neither a source nor a
target) and without D's features (no FID term, no normalisation statistics); it is queried with the
features of D's train split, and its ranking of the zoo models that have a measured transfer score on
D (rows target_dataset == D, from the OTHER sources' supernets) is judged on those scores:

- Kendall tau between the ranking and the measured scores;
- top-1 regret: best measured score minus the score of the first pick;
- top-k regret: best measured score minus the best score among the first k picks.

Baselines on the same candidates: a random zoo model (expected values, exact), the largest subnet of
the FID-nearest source (ranked by FID of the source, then by size), LogME on D's train images through
each candidate subnet (frozen features, zoo BatchNorm recalibration), and the oracle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from math import comb
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from mednns.data.spec import DatasetSpec, Task
from mednns.data.tensors import to_tensor
from mednns.utils.errors import MedNNSError
from mednns.utils.parallel import run_tasks
from mednns.metaspace.features import DatasetFeatures, FeatureConfig, read_train_images
from mednns.metaspace.fid import frechet_distance
from mednns.metaspace.logme import label_matrix, logme
from mednns.metaspace.train import SCORE, MetaSpaceConfig, train_metaspace
from mednns.data.subsets import seeded_subset
from mednns.zoo.store import BNStats, SubnetStore

log = logging.getLogger(__name__)

METHODS = ("metaspace", "logme", "fid_largest", "random", "oracle")


@dataclass(frozen=True)
class EvaluateConfig:
    """`params.yaml: evaluate`."""

    top_k: int = 5
    max_candidates: int = 300   # per left-out dataset (seeded subset; each source's largest kept)
    logme: bool = True          # needs the supernet checkpoints
    logme_images: int = 300     # seeded subset of the left-out dataset's train split
    seed: int = 0               # the candidate and image subsets
    metaspace_seeds: tuple[int, ...] = (0, 1, 2)   # one meta-space per seed: no single seed decides a claim
    workers: int = 1            # LogME passes at once: 1 in this process, more as Ray tasks


@dataclass
class TrainSplit:
    """A dataset's train split and what its labels mean (never its val or test split)."""

    images: np.ndarray
    labels: np.ndarray
    task: Task
    num_classes: int


def prepared_train_split(folder: str | Path) -> TrainSplit:
    """The train split of a prepared dataset (`data/prepared/<name>/`): manifest + train arrays only."""
    folder = Path(folder)
    try:
        spec = DatasetSpec.from_dict(json.loads((folder / "manifest.json").read_text())["spec"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MedNNSError(f"{folder}: no readable manifest.json ({type(e).__name__}); run `dvc repro prepare`") from None
    images = read_train_images(folder / "data.npz")
    with np.load(folder / "data.npz", allow_pickle=False) as z:
        labels = z["train_labels"]
    return TrainSplit(images, labels, spec.task, spec.num_classes)


# -- judging a ranking --------------------------------------------------------------------------
def expected_max_of_random(values: np.ndarray, k: int) -> float:
    """E[max of k values drawn uniformly without replacement]: the i-th smallest of n is the max of
    a k-subset in C(i-1, k-1) of the C(n, k) subsets."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n, k = len(v), min(k, len(v))
    weights = np.array([comb(i, k - 1) for i in range(n)], dtype=np.float64) / comb(n, k)
    return float(weights @ v)


def judge(scores: np.ndarray, actual: np.ndarray, k: int) -> dict[str, float]:
    """Kendall tau and regrets of ranking by `scores` (higher first; ties keep the given order)."""
    scores, actual = np.asarray(scores, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    best = actual.max()
    tau = kendalltau(scores, actual).statistic if np.ptp(scores) > 0 and np.ptp(actual) > 0 else 0.0
    return {"kendall_tau": float(tau), "top1_regret": float(best - actual[order[0]]),
            f"top{k}_regret": float(best - actual[order[:k]].max()), "top1_score": float(actual[order[0]]),
            "oracle_score": float(best)}


def random_baseline(actual: np.ndarray, k: int) -> dict[str, float]:
    best, mean = float(np.max(actual)), float(np.mean(actual))
    return {"kendall_tau": 0.0, "top1_regret": best - mean, f"top{k}_regret": best - expected_max_of_random(actual, k),
            "top1_score": mean, "oracle_score": best}


def fid_largest_scores(candidates: pd.DataFrame, fid_to_sources: dict[str, float]) -> np.ndarray:
    """Scores ranking the FID-nearest source first, and within a source the largest subnet first."""
    rank_of_source = {s: r for r, s in enumerate(sorted(fid_to_sources, key=fid_to_sources.get))}
    src = candidates.source_dataset.map(rank_of_source).to_numpy(dtype=np.float64)
    size = candidates.params.rank(pct=True).to_numpy()  # in (0, 1]: never outweighs a source step
    return -src + 0.5 * size


# -- LogME through the candidate subnets --------------------------------------------------------
class SubnetFeatures:
    """Frozen pooled features of zoo subnets on given images: each subnet as the zoo scored it (from
    `store` with its recalibrated statistics, `bn_stats(source)`), channels-last like the zoo's scorer.

    Picklable, so it can go to Ray workers: `preload` first, and it carries the supernets and statistics
    with it (a worker on another machine needs no access to their files)."""

    def __init__(self, store: SubnetStore, bn_stats: Callable[[str], BNStats], batch: int = 64):
        self.store, self.batch = store, batch
        self._load_bn, self._bn = bn_stats, {}
        self._last: tuple | None = None  # (key, subnet): consecutive calls share it

    def bn_stats(self, source: str) -> BNStats:
        if source not in self._bn:
            self._bn[source] = self._load_bn(source)
        return self._bn[source]

    def preload(self, sources) -> "SubnetFeatures":
        sources = sorted(set(sources))
        self.store.keep = max(self.store.keep, len(sources))
        for s in sources:
            self.store.load(s)
            self.bn_stats(s)
        return self

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}

    @torch.no_grad()
    def __call__(self, source: str, arch_json: str, images: np.ndarray) -> np.ndarray:
        if self._last is None or self._last[0] != (source, arch_json):
            net = self.store.subnet(source, arch_json, self.bn_stats(source))
            self._last = ((source, arch_json), net.to(memory_format=torch.channels_last))
        net, b = self._last[1], self.batch
        return torch.cat([net.forward_features(self._tensor(images[i:i + b], net))
                          for i in range(0, len(images), b)]).float().cpu().numpy()

    @staticmethod
    def _tensor(images: np.ndarray, net) -> torch.Tensor:
        x = to_tensor(images, channels=net.cfg.in_channels, size=net.cfg.image_size)
        return x.contiguous(memory_format=torch.channels_last)


@dataclass
class _LogMEPasses:
    """One subnet's LogME on every target it is a candidate for (a Ray task when workers > 1)."""

    features: SubnetFeatures
    data: dict[str, tuple[np.ndarray, np.ndarray]]   # target -> (images, label matrix)

    def __call__(self, job: tuple[str, str, list[tuple[str, int]]]) -> list[float]:
        source, arch_json, places = job
        return [logme(self.features(source, arch_json, self.data[d][0]), self.data[d][1]) for d, _ in places]


def logme_scores(candidates: dict[str, pd.DataFrame], splits: Callable[[str], TrainSplit],
                 subnet_features: SubnetFeatures, n_images: int, seed: int, progress: bool = True,
                 workers: int = 1) -> dict[str, np.ndarray]:
    """LogME of every candidate on its target: `candidates` maps a target dataset to its candidates.

    Subnets are visited once each, in supernet order, and scored on every target they are a candidate
    for: one BatchNorm recalibration per subnet, however many targets (the dominant cost). With
    `workers > 1` the subnets are Ray tasks (`run_tasks`); the scores are the same.
    """
    data = {}
    for d in candidates:
        split = splits(d)
        idx = seeded_subset(len(split.images), n_images, np.random.default_rng([seed, 3]))
        data[d] = (split.images[idx], label_matrix(split.labels[idx], split.task, split.num_classes))
    pairs = sorted((row.source_dataset, row.arch_json, d, i)
                   for d, c in candidates.items() for i, row in enumerate(c.itertuples()))
    jobs: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for source, arch_json, d, i in pairs:
        jobs.setdefault((source, arch_json), []).append((d, i))
    if workers > 1:
        subnet_features.preload(source for source, _ in jobs)
    out = {d: np.full(len(c), np.nan) for d, c in candidates.items()}
    items = [(source, arch_json, places) for (source, arch_json), places in jobs.items()]
    scores = run_tasks(_LogMEPasses(subnet_features, data), items, workers, desc="LogME", unit="subnet",
                       progress=progress)
    for (_, _, places), values in zip(items, scores):
        for (d, i), v in zip(places, values):
            out[d][i] = v
    return out


# -- leave one dataset out ----------------------------------------------------------------------
def evaluation_candidates(zoo: pd.DataFrame, dataset: str, max_candidates: int, seed: int) -> pd.DataFrame:
    """Models of the other sources with a measured score on `dataset` (a seeded subset when capped,
    each source's largest subnet always in it)."""
    c = zoo[(zoo.target_dataset == dataset) & (zoo.source_dataset != dataset) & zoo[SCORE].notna()]
    c = c.drop_duplicates(["source_dataset", "arch_id"]).sort_values(["source_dataset", "arch_id"])
    c = c.reset_index(drop=True)
    if max_candidates and len(c) > max_candidates:
        largest = set(c.groupby("source_dataset").params.idxmax())
        rest = np.array(sorted(set(c.index) - largest))
        rng = np.random.default_rng([seed, 5])
        keep = sorted(largest | set(rng.choice(rest, max(max_candidates - len(largest), 0), replace=False)))
        c = c.loc[keep].reset_index(drop=True)
    return c


def leave_one_out(zoo: pd.DataFrame, features: dict[str, DatasetFeatures], ms_cfg: MetaSpaceConfig,
                  feature_cfg: FeatureConfig, cfg: EvaluateConfig,
                  subnet_features: SubnetFeatures | None = None,
                  train_split: Callable[[str], TrainSplit] | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """One row per (dataset, method): kendall_tau, top1_regret, top{k}_regret, top1_score, oracle_score.

    LogME runs only when both `subnet_features` and `train_split` are given (and `cfg.logme`).
    """
    datasets = sorted(d for d in set(zoo.target_dataset) if d in features)
    candidates = {}
    for d in datasets:
        cands = evaluation_candidates(zoo, d, cfg.max_candidates, cfg.seed)
        if len(cands) < 2:
            log.warning("%s: fewer than 2 transfer rows from other sources; skipped", d)
            continue
        candidates[d] = cands
    with_logme = cfg.logme and subnet_features is not None and train_split is not None
    logme_by_dataset = (logme_scores(candidates, train_split, subnet_features, cfg.logme_images, cfg.seed, progress,
                                     cfg.workers) if with_logme and candidates else {})
    rows = []
    for d, cands in candidates.items():
        actual = cands[SCORE].to_numpy(np.float64)
        results = {}
        rest = zoo[(zoo.source_dataset != d) & (zoo.target_dataset != d)]
        per_seed = {}
        if ms_cfg.own_rows or (rest[SCORE].notna() & (rest.source_dataset != rest.target_dataset)).any():
            for seed in cfg.metaspace_seeds:
                ms, _ = train_metaspace(zoo, features, replace(ms_cfg, seed=seed), feature_cfg, exclude=[d],
                                        progress=progress)
                ranked = ms.rank(features[d])
                pred = cands.merge(ranked[["source_dataset", "arch_id", "predicted_score"]], how="left",
                                   on=["source_dataset", "arch_id"]).predicted_score.fillna(-1e9).to_numpy()
                per_seed[seed] = judge(pred, actual, cfg.top_k)
        else:
            log.warning("%s: without it no dataset has transfer rows from another source, so no meta-space can "
                        "be trained; only the baselines are reported", d)
        if d in logme_by_dataset:
            results["logme"] = judge(logme_by_dataset[d], actual, cfg.top_k)
        fid = {s: frechet_distance(features[d].mean, features[d].cov, features[s].mean, features[s].cov)
               for s in sorted(set(cands.source_dataset)) if s in features}
        results["fid_largest"] = judge(fid_largest_scores(cands, fid), actual, cfg.top_k)
        results["random"] = random_baseline(actual, cfg.top_k)
        results["oracle"] = judge(actual, actual, cfg.top_k)
        for seed in cfg.metaspace_seeds:  # the baselines do not depend on the meta-space's seed
            ours = {"metaspace": per_seed[seed]} if seed in per_seed else {}
            for method, r in {**ours, **results}.items():
                rows.append({"dataset": d, "method": method, "seed": seed, "candidates": len(cands), **r})
        if per_seed:
            log.info("%s: meta-space top-1 regret %s (random %.4f)", d,
                     " ".join(f"{r['top1_regret']:.4f}" for r in per_seed.values()), results["random"]["top1_regret"])
    if not rows:
        raise MedNNSError("no dataset has transfer rows from at least one other source: nothing to evaluate")
    return pd.DataFrame(rows)


def summary(results: pd.DataFrame) -> dict:
    """Nested dict for the stage's JSON metrics: per dataset and on average, per method, the mean over the
    meta-space seeds and the std over them (`<metric>_seed_std`)."""
    metrics = [c for c in results.columns if c not in ("dataset", "method", "candidates", "seed")]
    out: dict = {"datasets": {}, "mean": {}, "seeds": sorted(int(s) for s in results.seed.unique())}
    for (d, m), g in results.groupby(["dataset", "method"], sort=False):
        out["datasets"].setdefault(d, {})[m] = {
            **{k: round(float(g[k].mean()), 6) for k in metrics},
            **{f"{k}_seed_std": round(float(g[k].std(ddof=0)), 6) for k in metrics}}
        out["datasets"][d]["candidates"] = int(g.candidates.iloc[0])
    for m, g in results.groupby("method", sort=False):
        by_seed = g.groupby("seed")[metrics].mean()  # mean over datasets, per seed
        out["mean"][m] = {**{k: round(float(by_seed[k].mean()), 6) for k in metrics},
                          **{f"{k}_seed_std": round(float(by_seed[k].std(ddof=0)), 6) for k in metrics}}
    return out


def markdown(results: pd.DataFrame, k: int = 5) -> str:
    """The tables for the README: mean over datasets (± std over meta-space seeds), then top-1 regret and
    tau per dataset."""
    order = [m for m in METHODS if m in set(results.method)]
    names = {"metaspace": "meta-space", "logme": "LogME", "fid_largest": "largest subnet of FID-nearest source",
             "random": "random zoo model (expected)", "oracle": "oracle"}
    seeds = sorted(results.seed.unique())
    lines = [f"Leave-one-dataset-out over {results.dataset.nunique()} datasets, meta-spaces of {len(seeds)} seeds "
             "(mean ± std over seeds of the mean over datasets); regrets in accuracy points (transfer probe "
             "accuracy of the best candidate minus that of the pick).", "",
             f"| method | Kendall tau | top-1 regret | top-{k} regret |", "| --- | ---: | ---: | ---: |"]

    def cell(g, col, scale=1.0, digits=2):
        per_seed = g.groupby("seed")[col].mean() * scale
        return f"{per_seed.mean():.{digits}f} ± {per_seed.std(ddof=0):.{digits}f}"

    for m in order:
        g = results[results.method == m]
        lines.append(f"| {names[m]} | {cell(g, 'kendall_tau', digits=3)} | {cell(g, 'top1_regret', 100)} | "
                     f"{cell(g, f'top{k}_regret', 100)} |")
    datasets = sorted(results.dataset.unique())
    lines += ["", "Per dataset: top-1 regret (accuracy points) / Kendall tau, mean over seeds; candidates = zoo "
              "models of the other sources with a measured transfer score.", "",
              "| method | " + " | ".join(datasets) + " |", "| --- |" + " ---: |" * len(datasets)]
    table = results.groupby(["method", "dataset"])[["top1_regret", "kendall_tau"]].mean()
    for m in order:
        cells = [f"{100 * table.loc[(m, d), 'top1_regret']:.2f} / {table.loc[(m, d), 'kendall_tau']:.2f}"
                 if (m, d) in table.index else "-" for d in datasets]
        lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    counts = results.drop_duplicates("dataset").set_index("dataset").candidates
    lines.append("| candidates | " + " | ".join(str(int(counts[d])) for d in datasets) + " |")
    return "\n".join(lines) + "\n"
