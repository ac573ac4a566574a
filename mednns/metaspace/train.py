"""Training the meta-space on zoo rows (dataset, model, transfer score) and dataset features."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from mednns.utils.errors import MedNNSError
from mednns.metaspace.features import DatasetFeatures, FeatureConfig
from mednns.metaspace.fid import fid_matrix, fid_table, normalised
from mednns.metaspace.losses import contrastive_loss, fid_loss, performance_loss, rank_loss
from mednns.metaspace.model import CANDIDATE_COLUMNS, MetaSpace, MetaSpaceNet, _as_matrix, new_config

log = logging.getLogger(__name__)

SCORE = "transfer_acc"   # train/val only: the zoo's probe fits on target train, scores on target val
LOSSES = ("performance", "rank", "fid", "contrastive")


@dataclass(frozen=True)
class MetaSpaceConfig:
    """`params.yaml: metaspace`. A loss weight of 0 switches that loss off (ablation)."""

    dim: int = 64
    hidden: int = 128
    heads: int = 4
    steps: int = 1500
    lr: float = 2e-3
    weight_decay: float = 1e-4
    rows_per_dataset: int = 64     # zoo rows of each dataset per step (its top models always among them)
    set_min: int = 64              # images per dataset set per step: a fresh size and subset each step
    set_max: int = 256
    performance_weight: float = 1.0
    rank_weight: float = 1.0
    fid_weight: float = 0.5
    contrastive_weight: float = 0.5
    top_models: int = 5            # a dataset's positives for the contrastive loss: its best models
    own_rows: bool = False         # learn from subnets' own val scores too (see pair_table)
    rank_temperature: float = 0.5
    temperature: float = 0.1
    query_images: int = 1000       # images of a query dataset sampled for its embedding
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.set_min < 1 or self.set_max < self.set_min or self.rows_per_dataset < 2:
            raise MedNNSError("metaspace: steps >= 1, 1 <= set_min <= set_max and rows_per_dataset >= 2 required")
        if min(self.weights().values()) < 0 or not any(self.weights().values()):
            raise MedNNSError("metaspace: loss weights must be >= 0 and at least one > 0")
        if self.hidden % self.heads:
            raise MedNNSError("metaspace: hidden must be a multiple of heads")


    def weights(self) -> dict[str, float]:
        return {name: float(getattr(self, f"{name}_weight")) for name in LOSSES}


@dataclass
class PairTable:
    """The training rows in index form."""

    datasets: list[str]            # every dataset with features and rows (sources and targets)
    candidates: pd.DataFrame       # unique (source_dataset, arch_id), CANDIDATE_COLUMNS
    model: np.ndarray              # per row: candidate index
    target: np.ndarray             # per row: index into datasets
    y: np.ndarray                  # per row: normalised score
    top: np.ndarray                # per row: among its target's best `top_models`
    raw: np.ndarray                # per row: the raw score


def pair_table(zoo: pd.DataFrame, datasets: list[str], top_models: int, own_rows: bool = False) -> PairTable:
    """Rows of `zoo` among `datasets` (as source and as target), scores z-scored per target.

    Per-target normalisation because accuracies are not comparable across datasets (0.9 is poor on
    one and excellent on another); what transfers is which models are better, not the level.

    Every model is a candidate, but by default only cross-dataset rows are learnt from: a query is
    always a dataset no supernet was trained on. With own rows each target's top models are its own
    supernet's, and the meta-space learns "same source, same target" instead of what transfers; on
    the demo zoo that took the leave-one-out Kendall tau from 0.25 to 0.01.
    """
    rows = zoo[zoo.source_dataset.isin(datasets) & zoo.target_dataset.isin(datasets)]
    own = rows.source_dataset == rows.target_dataset
    # An own row has no transfer probe: its score is the subnet's own head on the source's val split.
    rows = rows.assign(_own=own, _score=rows[SCORE].where(~own, rows.val_acc))
    # The own row carries the source's val_acc: take each model's description from it when present.
    models = rows.sort_values(["_own", "source_dataset", "arch_id"], ascending=[False, True, True])
    models = models.drop_duplicates(["source_dataset", "arch_id"]).sort_values(["source_dataset", "arch_id"])
    models = models.assign(source_val_acc=models.val_acc.where(models._own)).reset_index(drop=True)
    index = {(s, a): i for i, (s, a) in enumerate(zip(models.source_dataset, models.arch_id))}
    used = sorted(set(rows.target_dataset) | set(rows.source_dataset))
    rows = rows[rows._score.notna() & (own_rows | ~rows._own)]
    if rows.empty:
        raise MedNNSError(f"no cross-dataset zoo rows with {SCORE} among {', '.join(datasets)}: set "
                          "zoo.transfer_per_dataset > 0 (or metaspace.own_rows: true)")
    model = np.array([index[(s, a)] for s, a in zip(rows.source_dataset, rows.arch_id)])
    target = np.array([used.index(t) for t in rows.target_dataset])
    raw = rows._score.to_numpy(np.float64)
    y, top = np.zeros(len(rows)), np.zeros(len(rows), dtype=bool)
    for t in range(len(used)):
        m = target == t
        if not m.any():
            continue
        v = raw[m]
        y[m] = (v - v.mean()) / max(v.std(), 1e-3)
        order = np.argsort(-v, kind="stable")
        flags = np.zeros(len(v), dtype=bool)
        flags[order[:min(top_models, max(len(v) - 1, 1))]] = True
        top[m] = flags
    return PairTable(used, models[CANDIDATE_COLUMNS], model, target, y.astype(np.float32), top, raw)


class _Trainer:
    def __init__(self, pairs: PairTable, feats: dict[str, np.ndarray], fid: np.ndarray | None,
                 cfg: MetaSpaceConfig):
        self.p, self.cfg = pairs, cfg
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.feats = [torch.as_tensor(feats[d]) for d in pairs.datasets]
        c = pairs.candidates
        self.enc = torch.as_tensor(_as_matrix(c.encoding))
        self.emb = torch.as_tensor(_as_matrix(c.embedding))
        self.src = torch.as_tensor([pairs.datasets.index(s) for s in c.source_dataset])
        all_feats = torch.cat(self.feats)
        self.net = MetaSpaceNet(all_feats.shape[1], self.enc.shape[1], self.emb.shape[1], len(pairs.datasets),
                                cfg.dim, cfg.hidden, cfg.heads)
        # Statistics of the training data only: a left-out dataset never shapes the normalisation.
        self.net.feat_mean.copy_(all_feats.mean(0))
        self.net.feat_std.copy_(all_feats.std(0).clamp_min(1e-4))
        self.net.emb_mean.copy_(self.emb.mean(0))
        self.net.emb_std.copy_(self.emb.std(0).clamp_min(1e-4) if len(self.emb) > 1 else torch.ones(self.emb.shape[1]))
        self.fid = None if fid is None else torch.as_tensor(fid, dtype=torch.float32)
        self.by_target = [np.flatnonzero(pairs.target == t) for t in range(len(pairs.datasets))]
        self.y = torch.as_tensor(pairs.y)
        self.top = torch.as_tensor(pairs.top)

    def _rows(self) -> list[np.ndarray]:
        out = []
        for rows in self.by_target:
            top, rest = rows[self.p.top[rows]], rows[~self.p.top[rows]]
            k = max(0, min(len(rest), self.cfg.rows_per_dataset - len(top)))
            out.append(np.concatenate([top, self.rng.choice(rest, k, replace=False)]))
        return out

    def step_losses(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        n = int(self.rng.integers(cfg.set_min, cfg.set_max + 1))
        n = min(n, min(len(f) for f in self.feats))
        x = torch.stack([f[torch.as_tensor(self.rng.choice(len(f), n, replace=False))] for f in self.feats])
        z = self.net.encode_dataset(x)
        per_target = self._rows()
        rows = np.concatenate(per_target)
        models, inverse = np.unique(self.p.model[rows], return_inverse=True)
        models_t = torch.as_tensor(models)
        zm = self.net.encode_model(self.enc[models_t], self.emb[models_t], z[self.src[models_t]])
        zm_rows = zm[torch.as_tensor(inverse)]
        src_rows = self.src[torch.as_tensor(self.p.model[rows])]
        pred = self.net.head(z[torch.as_tensor(self.p.target[rows])], zm_rows, z[src_rows])
        y = self.y[torch.as_tensor(rows)]
        top = self.top[torch.as_tensor(rows)]
        losses = {"performance": performance_loss(pred, y)}
        rank, con, start = [], [], 0
        for t, r in enumerate(per_target):
            sl = slice(start, start + len(r))
            start += len(r)
            rank.append(rank_loss(pred[sl], y[sl], cfg.rank_temperature))
            con.append(contrastive_loss(z[t], zm_rows[sl], top[sl], cfg.temperature))
        losses["rank"] = torch.stack(rank).mean()
        losses["contrastive"] = torch.stack(con).mean()
        losses["fid"] = fid_loss(z, self.fid) if self.fid is not None else z.sum() * 0.0
        return losses

    def fit(self, progress: bool = True) -> pd.DataFrame:
        # The networks are tiny: one thread is faster than two fighting over a busy CPU.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(progress)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, progress: bool) -> pd.DataFrame:
        cfg, weights = self.cfg, self.cfg.weights()
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = max(1, cfg.steps // 10)

        def schedule(step: int) -> float:  # linear warm-up, then cosine to zero; valid for any step count
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        history, window = [], []
        self.net.train()
        bar = tqdm(range(cfg.steps), desc="meta-space", unit="step", disable=not progress,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        for step in bar:
            losses = self.step_losses()
            total = sum(weights[k] * v for k, v in losses.items() if weights[k] > 0)
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            opt.step()
            sched.step()
            window.append({"total": float(total.detach()), **{k: float(v.detach()) for k, v in losses.items()}})
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                mean = pd.DataFrame(window).mean().to_dict()
                history.append({"step": step + 1, **mean, "lr": sched.get_last_lr()[0]})
                bar.set_postfix(loss=f"{mean['total']:.3f}")
                window = []
        bar.close()
        self.net.eval()
        with torch.no_grad():
            self.net.source_codes.copy_(torch.stack([self.net.encode_dataset(f) for f in self.feats]))
        return pd.DataFrame(history)


def check_features(features: dict[str, DatasetFeatures], feature_cfg: FeatureConfig) -> None:
    for name, f in features.items():
        if f.extractor != feature_cfg.extractor_id:
            raise MedNNSError(f"features of {name} come from extractor {f.extractor} but params.yaml features "
                              f"give {feature_cfg.extractor_id}; re-run `dvc repro dataset_features`")


def train_metaspace(zoo: pd.DataFrame, features: dict[str, DatasetFeatures], cfg: MetaSpaceConfig,
                    feature_cfg: FeatureConfig, exclude: tuple[str, ...] | list[str] = (),
                    progress: bool = True) -> tuple[MetaSpace, pd.DataFrame]:
    """Train a meta-space on every dataset with both zoo rows and features, except `exclude`.

    An excluded dataset is absent everywhere: as a source (its models are not candidates), as a
    target (its scores are not learnt), from the FID targets and from the feature normalisation.
    Returns the meta-space and the loss history (one row per `log_every` steps).
    """
    check_features(features, feature_cfg)
    names = sorted((set(zoo.source_dataset) | set(zoo.target_dataset)) - set(exclude))
    without = [n for n in names if n not in features and n in set(zoo.source_dataset)]
    if without:
        raise MedNNSError(f"no features for zoo source(s) {', '.join(without)}; run `dvc repro dataset_features`")
    names = [n for n in names if n in features]
    pairs = pair_table(zoo, names, cfg.top_models, cfg.own_rows)
    feats = {d: features[d].features for d in pairs.datasets}
    fid = None
    if cfg.fid_weight > 0 and len(pairs.datasets) >= 3:
        fid = normalised(fid_matrix(fid_table({d: (features[d].mean, features[d].cov) for d in pairs.datasets})),
                         pairs.datasets)
    log.info("meta-space: %d datasets, %d candidates, %d pairs%s", len(pairs.datasets), len(pairs.candidates),
             len(pairs.y), f" (without {', '.join(exclude)})" if exclude else "")
    trainer = _Trainer(pairs, feats, fid, cfg)
    history = trainer.fit(progress)
    metrics = {f"final_{k}": float(history[k].iloc[-1]) for k in ("total", *LOSSES)}
    metrics.update(fit_quality(trainer, pairs))
    metrics = {k: (v if np.isfinite(v) else None) for k, v in metrics.items()}  # JSON has no NaN
    config = new_config(trainer.net, feature_cfg, pairs.datasets, pairs.datasets, asdict(cfg), cfg.query_images,
                        metrics)
    return MetaSpace(trainer.net, config, pairs.candidates), history


@torch.no_grad()
def fit_quality(trainer: _Trainer, pairs: PairTable) -> dict[str, float]:
    """In-sample Kendall tau per training dataset (a sanity check, not an evaluation: see `evaluate`)."""
    net = trainer.net
    codes = net.encode_model(trainer.enc, trainer.emb, net.source_codes[trainer.src])
    taus = []
    for t, rows in enumerate(trainer.by_target):
        m = torch.as_tensor(pairs.model[rows])
        pred = net.head(net.source_codes[t], codes[m], net.source_codes[trainer.src[m]]).numpy()
        if len(rows) > 2 and np.ptp(pairs.raw[rows]) > 0:
            taus.append(kendalltau(pred, pairs.raw[rows]).statistic)
    return {"train_kendall_tau": float(np.nanmean(taus)) if taus else float("nan")}
