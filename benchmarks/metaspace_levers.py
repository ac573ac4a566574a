"""Ablations of the meta-space's training data, judged leave-one-dataset-out as the `leave_one_out` stage
judges it (the meta-space trained without D, ranking the zoo models of the other sources on D's transfer
scores: Kendall tau, top-1 and top-5 regret; 3 meta-space seeds):

- `randconv`: the stage's own meta-space (a check that this script judges as the stage does; always run,
  first, as the baseline of the others);
- `indomain`: dataset features from the zoo's own supernets instead of random convolutions: the
  pooled features of the largest subnet of each supernet other than D's (as the zoo scored it, with its
  recalibrated BatchNorm statistics) on the same sampled train images; `both` appends the random-
  convolution features. They are passed under the random-convolution extractor's id, inside this script only;
- `class_subsets`: more meta-training tasks, as TANS built them: `--tasks` class subsets of every
  zoo dataset with three or more classes, each a new target with its own features (the random-convolution
  features of its sampled train images) and transfer scores (the zoo's probe, a logistic head on frozen
  features of `--probe-train` train images of those classes, scored on its val images of those classes,
  for every model of another source that has a transfer score on the parent dataset). Leaving D out
  removes D and every task derived from D.

Run (after `make demo`): `python -m benchmarks.metaspace_levers [--levers indomain,both,class_subsets]
[--out rows.csv]` (all of them by default; 19 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import print_table
from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpaceConfig
from mednns.metaspace.loo import (EvaluateConfig, SubnetFeatures, evaluation_candidates, judge,
                                  prepared_train_split, random_baseline)
from mednns.data.spec import Task
from mednns.data.subsets import seeded_subset
from mednns.metaspace.train import SCORE, train_metaspace
from mednns.train.heads import fit_logistic_head
from mednns.train.metrics import evaluate_scores
from mednns.zoo import BNStats, SubnetStore, ZooConfig, bn_stats_path, read_zoo
from mednns.utils.io import atomic_path
from pipelines.stage import config, datasets, run

TASK_SEP = "~"   # a derived task is "<parent>~<classes>"


def largest_subnet(zoo: pd.DataFrame, source: str) -> str:
    own = zoo[(zoo.source_dataset == source) & (zoo.target_dataset == source)]
    return own.loc[own.params.idxmax(), "arch_json"]


def with_features(f: DatasetFeatures, feats: np.ndarray) -> DatasetFeatures:
    feats = feats.astype(np.float32)
    return replace(f, features=feats, mean=feats.mean(0, dtype=np.float64),
                   cov=np.cov(feats, rowvar=False, dtype=np.float64))


def class_subset_tasks(zoo: pd.DataFrame, randconv: dict[str, DatasetFeatures], subnets: SubnetFeatures,
                       data: Path, n_tasks: int, probe_train: int, probe_val: int
                       ) -> tuple[pd.DataFrame, dict[str, DatasetFeatures]]:
    """Zoo rows and features of `n_tasks` seeded class subsets (2 to 4 classes) of every dataset with 3+."""
    rows, feats = [], {}
    for parent in sorted(randconv):
        split = prepared_train_split(data / parent)
        if split.task != Task.MULTI_CLASS or split.num_classes < 3:
            continue
        with np.load(data / parent / "data.npz", allow_pickle=False) as z:
            val_images, val_labels = z["val_images"], z["val_labels"].reshape(-1)
        train_labels = split.labels.reshape(-1)
        rng = np.random.default_rng([len(parent), split.num_classes, 11])
        tasks = {}  # name -> its classes
        for i in range(n_tasks):
            classes = np.sort(rng.choice(split.num_classes, min(2 + i % 3, split.num_classes - 1), replace=False))
            tasks[parent + TASK_SEP + "-".join(map(str, classes))] = classes
        tr = seeded_subset(len(train_labels), probe_train, np.random.default_rng([1, 13]))
        va = seeded_subset(len(val_labels), probe_val, np.random.default_rng([2, 13]))
        cands = zoo[(zoo.target_dataset == parent) & zoo[SCORE].notna()]
        sample_labels = train_labels[randconv[parent].indices]
        for name, classes in tasks.items():
            keep = np.isin(sample_labels, classes)
            feats[name] = with_features(replace(randconv[parent], dataset=name), randconv[parent].features[keep])
        for row in cands.itertuples(index=False):
            f_tr = subnets(row.source_dataset, row.arch_json, split.images[tr])
            f_va = subnets(row.source_dataset, row.arch_json, val_images[va])
            for name, classes in tasks.items():
                m_tr, m_va = np.isin(train_labels[tr], classes), np.isin(val_labels[va], classes)
                y_tr, y_va = np.searchsorted(classes, train_labels[tr][m_tr]), np.searchsorted(classes, val_labels[va][m_va])
                w, b = fit_logistic_head(f_tr[m_tr], y_tr[:, None], Task.MULTI_CLASS, len(classes))
                acc = evaluate_scores(y_va[:, None], f_va[m_va] @ w.T + b, Task.MULTI_CLASS)["acc"]
                rows.append({**row._asdict(), "target_dataset": name, SCORE: acc, "transfer_auc": float("nan")})
        print(f"{parent}: {len(tasks)} class-subset tasks, {len(cands)} candidates", flush=True)
    return pd.DataFrame(rows), feats


LEVERS = ("randconv", "indomain", "both", "class_subsets")


def evaluate_lever(lever: str, zoo: pd.DataFrame, names: list[str], randconv: dict[str, DatasetFeatures],
                   subnets: SubnetFeatures, args) -> pd.DataFrame:
    """One row per (left-out dataset, meta-space seed), judged as the `leave_one_out` stage judges."""
    ms_cfg, feature_cfg = config("metaspace", MetaSpaceConfig), config("features", FeatureConfig)
    ev = config("evaluate", EvaluateConfig)
    pooled = {}  # (source, dataset) -> features of the source's largest subnet on the dataset's sample
    if lever in ("indomain", "both"):
        samples = {d: prepared_train_split(Path(args.data) / d).images[randconv[d].indices] for d in names}
        for s in names:
            arch = largest_subnet(zoo, s)
            for d in names:
                pooled[(s, d)] = subnets(s, arch, samples[d])
    task_feats, train_zoo = {}, zoo
    if lever == "class_subsets":
        task_rows, task_feats = class_subset_tasks(zoo, randconv, subnets, Path(args.data), args.tasks,
                                                   args.probe_train, args.probe_val)
        train_zoo = pd.concat([zoo, task_rows[zoo.columns]], ignore_index=True)
    rows = []
    for held in names:
        others = [s for s in names if s != held]
        feats = dict(task_feats)
        for d in names:
            parts = [pooled[(s, d)] for s in others] if pooled else []
            if lever != "indomain":
                parts.append(randconv[d].features)
            feats[d] = with_features(randconv[d], np.concatenate(parts, axis=1))
        derived = [t for t in task_feats if t.split(TASK_SEP)[0] == held]
        cands = evaluation_candidates(zoo, held, ev.max_candidates, ev.seed)
        actual = cands[SCORE].to_numpy(np.float64)
        for seed in ev.metaspace_seeds:
            t0 = time.perf_counter()
            ms, _ = train_metaspace(train_zoo, feats, replace(ms_cfg, seed=seed), feature_cfg,
                                    exclude=[held, *derived], progress=False)
            ranked = ms.rank(feats[held])
            pred = cands.merge(ranked[["source_dataset", "arch_id", "predicted_score"]], how="left",
                               on=["source_dataset", "arch_id"]).predicted_score.fillna(-1e9).to_numpy()
            rows.append({"lever": lever, "dataset": held, "seed": seed, "dim": feats[held].features.shape[1],
                         "tasks": len(task_feats), "seconds": time.perf_counter() - t0,
                         **judge(pred, actual, ev.top_k)})
        rnd = random_baseline(actual, ev.top_k)
        print(f"{lever}, {held}: top-1 regret {[round(100 * r['top1_regret'], 2) for r in rows[-len(ev.metaspace_seeds):]]}"
              f" (random {100 * rnd['top1_regret']:.2f})", flush=True)
    return pd.DataFrame(rows)


def table(res: pd.DataFrame, k: int) -> list[dict]:
    """Per lever: mean over datasets, ± std over meta-space seeds; top-1 regret per dataset; against randconv."""
    out, base = [], None
    for lever, g in res.groupby("lever", sort=False):
        by_seed = g.groupby("seed")[["kendall_tau", "top1_regret", f"top{k}_regret"]].mean()
        row = {"lever": lever, "dims": int(g.dim.iloc[0]), "tasks": int(g.tasks.iloc[0])}
        for col, name, scale in (("kendall_tau", "tau", 1), ("top1_regret", "top-1 regret", 100),
                                 (f"top{k}_regret", f"top-{k} regret", 100)):
            row[name] = f"{scale * by_seed[col].mean():.3f} ± {scale * by_seed[col].std(ddof=0):.3f}"
        for d, gd in g.groupby("dataset"):
            row[f"top-1 {d}"] = round(100 * gd.top1_regret.mean(), 2)
        base = by_seed if base is None else base
        row["tau vs randconv"] = f"{by_seed.kendall_tau.mean() - base.kendall_tau.mean():+.3f}"
        row["top-1 vs randconv"] = f"{100 * (by_seed.top1_regret.mean() - base.top1_regret.mean()):+.2f}"
        row["s per meta-space"] = round(g.seconds.mean(), 1)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levers", default=",".join(LEVERS),
                        help=f"comma-separated, of {', '.join(LEVERS)}; randconv (the stage's) always runs first")
    parser.add_argument("--tasks", type=int, default=3, help="class_subsets: tasks per dataset with 3+ classes")
    parser.add_argument("--probe-train", type=int, default=1000)
    parser.add_argument("--probe-val", type=int, default=400)
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--features", default="features")
    parser.add_argument("--supernets", default="models/supernets")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--out", default=None, help="CSV of every (lever, dataset, seed) row")
    args = parser.parse_args(argv)
    levers = list(dict.fromkeys(["randconv", *(x.strip() for x in args.levers.split(",") if x.strip())]))
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        parser.error(f"unknown lever(s) {', '.join(unknown)}; use {', '.join(LEVERS)}")
    names = datasets()
    zoo = read_zoo([Path(args.zoo) / f"{d}.parquet" for d in names])
    randconv = {d: DatasetFeatures.load(Path(args.features) / f"{d}.npz") for d in names}
    subnets = SubnetFeatures(SubnetStore(args.supernets),
                             lambda d: BNStats.load(bn_stats_path(Path(args.zoo) / f"{d}.parquet")),
                             config("zoo", ZooConfig).eval_batch)
    res = pd.concat([evaluate_lever(lever, zoo, names, randconv, subnets, args) for lever in levers],
                    ignore_index=True)
    if args.out:
        with atomic_path(args.out) as tmp:
            res.to_csv(tmp, index=False)
    k = config("evaluate", EvaluateConfig).top_k
    print_table(f"Leave-one-out, the meta-space's training data ({len(names)} datasets, "
                f"{res.seed.nunique()} seeds; regrets in accuracy points)", table(res, k))


if __name__ == "__main__":
    run(main)
