"""`MetaSpace`: the trained meta-space (networks + the zoo candidates it ranks) and its query."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mednns import __version__
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path
from mednns.metaspace.encoders import ModelEncoder, PerformanceHead, SetEncoder
from mednns.metaspace.features import (DatasetFeatures, FeatureConfig, RandomConvExtractor, check_images,
                                       features_of_images, read_train_images)

log = logging.getLogger(__name__)

FORMAT = "mednns.metaspace/1"
WEIGHTS, CONFIG, CANDIDATES = "weights.pt", "config.json", "candidates.parquet"
CONSTRAINT_COLUMNS = {"max_params": "params", "max_macs": "macs", "max_latency_ms": "latency_ms"}
CANDIDATE_COLUMNS = ["source_dataset", "arch_id", "arch_json", "encoding", "embedding", "params", "macs",
                     "latency_ms", "source_val_acc"]
QUERY_COLUMNS = ["rank", "source_dataset", "arch_id", "arch_json", "predicted_score", "similarity", "params",
                 "macs", "latency_ms", "source_val_acc"]


class MetaSpaceNet(nn.Module):
    """The three encoders plus the normalisation statistics they were trained with (buffers, so one
    plain state dict holds everything)."""

    def __init__(self, feat_dim: int, enc_dim: int, emb_dim: int, n_sources: int, dim: int = 64,
                 hidden: int = 128, heads: int = 4):
        super().__init__()
        self.dims = dict(feat_dim=feat_dim, enc_dim=enc_dim, emb_dim=emb_dim, n_sources=n_sources, dim=dim,
                         hidden=hidden, heads=heads)
        self.dataset_encoder = SetEncoder(feat_dim, hidden, dim, heads)
        self.model_encoder = ModelEncoder(enc_dim, emb_dim, dim, hidden, dim)
        self.head = PerformanceHead(dim, hidden)
        for name, size in (("feat_mean", feat_dim), ("feat_std", feat_dim), ("emb_mean", emb_dim),
                           ("emb_std", emb_dim)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))
        self.register_buffer("source_codes", torch.zeros(n_sources, dim))

    def encode_dataset(self, feats: Tensor) -> Tensor:
        return self.dataset_encoder((feats - self.feat_mean) / self.feat_std)

    def encode_model(self, encoding: Tensor, embedding: Tensor, source_code: Tensor) -> Tensor:
        return self.model_encoder(encoding, (embedding - self.emb_mean) / self.emb_std, source_code)


def _as_matrix(column: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float32) for v in column]) if len(column) else np.zeros((0, 0))


class MetaSpace:
    """Dataset encoder + model encoder + performance head, and the zoo candidates they rank.

    Folder layout (`save` / `load`): weights.pt (a plain state dict, `torch.load(weights_only=True)`),
    config.json (dimensions, feature extractor, sources, training settings) and candidates.parquet
    (one row per zoo model: source_dataset, arch_id, arch_json, encoding, embedding, params, macs,
    latency_ms, source_val_acc).
    """

    def __init__(self, net: MetaSpaceNet, config: dict, candidates: pd.DataFrame):
        self.net = net.eval()
        self.config = config
        self.candidates = candidates.reset_index(drop=True)
        self.feature_config = FeatureConfig(**config["features"])
        self.sources = list(config["sources"])
        unknown = set(self.candidates.source_dataset) - set(self.sources)
        if unknown:
            raise MedNNSError(f"candidates from {', '.join(sorted(unknown))}, which the meta-space has no code for")
        self._extractor: RandomConvExtractor | None = None
        self._model_codes: Tensor | None = None

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the folder atomically: a crash never leaves a half-written meta-space behind."""
        folder = Path(folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            torch.save({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                       tmp / WEIGHTS)
            (tmp / CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
            self.candidates[CANDIDATE_COLUMNS].to_parquet(tmp / CANDIDATES, index=False)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "MetaSpace":
        folder = Path(folder)
        for name in (WEIGHTS, CONFIG, CANDIDATES):
            if not (folder / name).is_file():
                raise MedNNSError(f"{folder}: no {name}; run `dvc repro train_metaspace` or `dvc pull`")
        fix = "re-run `dvc repro train_metaspace` or `dvc checkout` it"
        try:
            config = json.loads((folder / CONFIG).read_text())
        except ValueError as e:
            raise MedNNSError(f"{folder / CONFIG}: unreadable ({e}); {fix}") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise MedNNSError(f"{folder}: not a MedNNS meta-space (expected format {FORMAT})")
        missing = [k for k in ("net", "features", "sources", "query_images") if k not in config]
        if missing:
            raise MedNNSError(f"{folder / CONFIG}: no {', '.join(missing)} entry; a damaged or older meta-space: {fix}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
            net = MetaSpaceNet(**config["net"])
            net.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged or mismatched file
            raise MedNNSError(f"{folder / WEIGHTS}: cannot load ({type(e).__name__}); {fix}") from None
        try:
            candidates = pd.read_parquet(folder / CANDIDATES)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise MedNNSError(f"{folder / CANDIDATES}: not a readable parquet table ({type(e).__name__}); {fix}") from None
        absent = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
        if absent:
            raise MedNNSError(f"{folder / CANDIDATES}: no column(s) {', '.join(absent)}; {fix}")
        try:
            return cls(net, config, candidates)
        except (KeyError, TypeError) as e:  # config entries of the wrong shape
            raise MedNNSError(f"{folder / CONFIG}: entry {e} does not fit this version of MedNNS; {fix}") from None

    # -- embeddings ---------------------------------------------------------------------------
    @property
    def extractor_id(self) -> str:
        return self.feature_config.extractor_id

    def dataset_features(self, images_or_npz) -> np.ndarray:
        """Per-image features (n, D) of a query: images, a dataset npz (its train split), a
        features npz of this extractor, a MedDataset, or DatasetFeatures."""
        x = images_or_npz
        if isinstance(x, DatasetFeatures):
            return self._checked(x)
        if hasattr(x, "images") and hasattr(x, "spec"):  # a MedDataset
            x = x.images("train")
        if isinstance(x, (str, Path)):
            path = Path(x)
            if not path.is_file():
                raise MedNNSError(f"{path}: file not found")
            try:
                with np.load(path, allow_pickle=False) as z:
                    is_features = "features" in z.files and "extractor" in z.files
            except Exception as e:
                raise MedNNSError(f"{path}: cannot read as an npz file ({type(e).__name__})") from None
            if is_features:
                return self._checked(DatasetFeatures.load(path))
            x = read_train_images(path)
        check_images(x, "query images")
        if self._extractor is None:
            self._extractor = RandomConvExtractor(self.feature_config)
        cfg = FeatureConfig(**{**self.config["features"], "sample_images": int(self.config["query_images"])})
        return features_of_images(x, cfg, extractor=self._extractor).features

    def _checked(self, f: DatasetFeatures) -> np.ndarray:
        if f.extractor != self.extractor_id:
            raise MedNNSError(f"features of {f.dataset} come from extractor {f.extractor}, the meta-space "
                              f"uses {self.extractor_id}; recompute them")
        return f.features

    @torch.no_grad()
    def embed_dataset(self, images_or_npz) -> np.ndarray:
        feats = torch.as_tensor(self.dataset_features(images_or_npz))
        return self.net.encode_dataset(feats).numpy()

    @torch.no_grad()
    def model_codes(self) -> Tensor:
        """Embeddings of every candidate (cached: they do not depend on the query)."""
        if self._model_codes is None:
            c = self.candidates
            self._model_codes = self.net.encode_model(torch.as_tensor(_as_matrix(c.encoding)),
                                                      torch.as_tensor(_as_matrix(c.embedding)),
                                                      self.source_codes())
        return self._model_codes

    def source_codes(self) -> Tensor:
        """Per candidate, the embedding of the dataset its weights were trained on."""
        src = torch.as_tensor([self.sources.index(s) for s in self.candidates.source_dataset], dtype=torch.long)
        return self.net.source_codes[src]

    # -- ranking ------------------------------------------------------------------------------
    @torch.no_grad()
    def rank(self, images_or_npz, constraints: dict | None = None) -> pd.DataFrame:
        """Every candidate that meets `constraints`, ranked best first (see `query`)."""
        keep = self._meets(constraints)
        zd = torch.as_tensor(self.embed_dataset(images_or_npz))
        keep_t = torch.as_tensor(keep)
        zm = self.model_codes()[keep_t]
        pred = self.net.head(zd, zm, self.source_codes()[keep_t]).numpy()
        sim = torch.nn.functional.cosine_similarity(zm, zd.expand_as(zm), dim=-1).numpy()
        out = self.candidates.loc[keep].copy()
        out["predicted_score"], out["similarity"] = pred.astype(float), sim.astype(float)
        # Stable order for equal predictions: a query gives the same table every time.
        out = out.sort_values(["predicted_score", "source_dataset", "arch_id"], ascending=[False, True, True],
                              kind="stable").reset_index(drop=True)
        out["rank"] = np.arange(1, len(out) + 1)
        return out[QUERY_COLUMNS]

    def query(self, images_or_npz, k: int = 5, constraints: dict | None = None) -> pd.DataFrame:
        """The `k` zoo models predicted to transfer best to the query dataset, best first.

        See the package docstring for the inputs, columns and errors.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MedNNSError(f"k must be a positive integer, got {k!r}")
        return self.rank(images_or_npz, constraints).head(int(k)).reset_index(drop=True)

    def _meets(self, constraints: dict | None) -> np.ndarray:
        c = self.candidates
        keep = np.ones(len(c), dtype=bool)
        given = {key: v for key, v in (constraints or {}).items() if v is not None}
        unknown = set(given) - set(CONSTRAINT_COLUMNS)
        if unknown:
            raise MedNNSError(f"unknown constraint(s) {', '.join(sorted(unknown))}: use "
                              f"{', '.join(CONSTRAINT_COLUMNS)}")
        for key, value in given.items():
            try:
                limit = float(value)
            except (TypeError, ValueError):
                raise MedNNSError(f"constraint {key} must be a number, got {value!r}") from None
            keep &= c[CONSTRAINT_COLUMNS[key]].to_numpy(dtype=float) <= limit
        if not keep.any():
            smallest = ", ".join(f"{col} {c[col].min():g}" for col in ("params", "macs", "latency_ms"))
            raise MedNNSError(f"no zoo model meets the constraints {given} (smallest in the zoo: {smallest})")
        return np.flatnonzero(keep)

    def __repr__(self) -> str:
        return (f"MetaSpace({len(self.candidates)} candidates from {len(self.sources)} source(s), "
                f"extractor {self.extractor_id})")


def new_config(net: MetaSpaceNet, feature_cfg: FeatureConfig, sources: list[str], datasets: list[str],
               training: dict, query_images: int, metrics: dict | None = None) -> dict:
    return {"format": FORMAT, "mednns_version": __version__, "net": dict(net.dims),
            "features": feature_cfg.to_dict(), "extractor": feature_cfg.extractor_id, "sources": list(sources),
            "datasets": list(datasets), "training": training, "query_images": int(query_images),
            "score": "transfer_acc, z-scored among the zoo models of each target dataset",
            "metrics": metrics or {}}
