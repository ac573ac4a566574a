"""Dataset features: a fixed, offline, deterministic image feature extractor applied to a seeded
sample of a dataset's TRAIN split (never val or test: the features describe what a user would hand
over before training, and the reference implementation's test-split features leak).

The extractor (`mednns.randconv`) needs no download: a two-layer convolutional network whose weights
are drawn once from a seeded numpy generator (PCG64, identical on every machine and numpy version),
run at three scales, plus plain intensity statistics. Random convolutional features are a known,
principled stand-in for a pretrained backbone when only distances between image distributions are
needed (they are injective enough for Fréchet distances to separate datasets, and nothing is learnt
on any of the datasets compared).
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mednns.data.tensors import to_tensor
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path

log = logging.getLogger(__name__)

EXTRACTOR = "mednns.randconv"
VERSION = 1
_KERNELS = (5, 3)
_HIST_BINS = 8
_QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class FeatureConfig:
    """`params.yaml: features`."""

    sample_images: int = 1000     # seeded train subset per dataset (all of it when smaller)
    image_size: int = 28          # every dataset is resampled to this before the extractor
    seed: int = 0                 # extractor weights and the image sample
    batch_size: int = 512
    widths: tuple[int, ...] = (16, 32)
    scales: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if len(self.widths) != len(_KERNELS):
            raise MedNNSError(f"features.widths needs {len(_KERNELS)} values, got {list(self.widths)}")
        if self.sample_images < 2 or self.image_size < 8 or min(self.scales) < 1:
            raise MedNNSError("features: sample_images >= 2, image_size >= 8 and scales >= 1 are required")


    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def extractor_id(self) -> str:
        """Everything that changes the features, so features of different extractors are never mixed."""
        return (f"{EXTRACTOR}/{VERSION}:size={self.image_size}:widths={'x'.join(map(str, self.widths))}:"
                f"scales={','.join(map(str, self.scales))}:seed={self.seed}")


def feature_names(cfg: FeatureConfig) -> list[str]:
    names = [f"conv{layer}_s{s}_{i}" for s in cfg.scales for layer, w in enumerate(cfg.widths, 1)
             for i in range(w)]
    names += [f"mean_{c}" for c in "rgb"] + [f"std_{c}" for c in "rgb"]
    names += [f"hist_{i}" for i in range(_HIST_BINS)] + [f"q{int(q * 100):02d}" for q in _QUANTILES]
    return names + ["grad_mean", "grad_std"]


class RandomConvExtractor:
    """The fixed extractor: (N, H, W[, C]) uint8 -> (N, D) float32, D = len(feature_names(cfg))."""

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 20240601])
        self.weights = []
        c_in = 3
        for layer, (width, k) in enumerate(zip(cfg.widths, _KERNELS)):
            w = rng.standard_normal((width, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))
            if layer == 0:
                # Zero-sum first filters answer to edges and texture; brightness is left to the
                # intensity statistics, so the two parts do not measure the same thing twice.
                w -= w.mean(axis=(1, 2, 3), keepdims=True)
            self.weights.append(torch.as_tensor(w, dtype=torch.float32))
            c_in = width
        self._luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        self._sobel = torch.tensor([[[[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]]]) / 8

    @torch.inference_mode()
    def _batch(self, images: np.ndarray) -> torch.Tensor:
        x = to_tensor(images, channels=3, size=self.cfg.image_size)      # [-1, 1]
        parts = []
        for s in self.cfg.scales:
            h = F.avg_pool2d(x, s) if s > 1 else x
            for layer, w in enumerate(self.weights):
                if layer:
                    h = F.max_pool2d(h, 2, ceil_mode=True)
                h = F.relu(F.conv2d(h, w, padding=w.shape[-1] // 2))
                parts.append(h.mean(dim=(2, 3)))
        u = (x + 1) / 2                                                     # [0, 1]
        parts += [u.mean(dim=(2, 3)), u.std(dim=(2, 3))]
        grey = (u * self._luma).sum(1, keepdim=True)
        flat = grey.flatten(1)
        bins = torch.clamp((flat * _HIST_BINS).long(), max=_HIST_BINS - 1)
        parts.append(F.one_hot(bins, _HIST_BINS).float().mean(1))
        parts.append(torch.quantile(flat, torch.tensor(_QUANTILES), dim=1).T)
        gx = F.conv2d(grey, self._sobel, padding=1)
        gy = F.conv2d(grey, self._sobel.transpose(2, 3), padding=1)
        mag = (gx.square() + gy.square()).sqrt().flatten(1)
        parts += [mag.mean(1, keepdim=True), mag.std(1, keepdim=True)]
        return torch.cat(parts, dim=1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        check_images(images, "images")
        b = self.cfg.batch_size
        out = [self._batch(images[i:i + b]) for i in range(0, len(images), b)]
        return torch.cat(out).numpy().astype(np.float32)


def check_images(images, where: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise MedNNSError(f"{where}: expected a uint8 array (N, H, W) or (N, H, W, 3), got "
                          f"{type(images).__name__} {getattr(images, 'dtype', '')}".rstrip())
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)) or len(images) < 2:
        raise MedNNSError(f"{where}: expected uint8 images (N, H, W) or (N, H, W, 3) with N >= 2, "
                          f"got shape {images.shape}")


def sample_indices(n: int, k: int, seed: int) -> np.ndarray:
    """A seeded subset of `k` of `n` items, sorted (all of them when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 7]).choice(n, k, replace=False))


def read_train_images(path: str | Path) -> np.ndarray:
    """The `train_images` array of a MedMNIST-layout npz, and nothing else.

    npz members load lazily, so the val and test arrays are never decompressed or even parsed:
    a dataset's features cannot depend on its test split, whatever that split holds.
    """
    path = Path(path)
    if not path.is_file():
        raise MedNNSError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "train_images" not in npz.files:
                raise MedNNSError(f"{path}: no train_images array; expected a MedMNIST-layout npz")
            images = npz["train_images"]
    except MedNNSError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise MedNNSError(f"{path}: cannot read train_images ({type(e).__name__}: {e})") from None
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise MedNNSError(f"{path}: train_images contains NaN or inf values")
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    check_images(images, f"{path}: train_images")
    return images


@dataclass
class DatasetFeatures:
    """What `features/<dataset>.npz` holds."""

    dataset: str
    features: np.ndarray       # (n, D) per sampled train image
    mean: np.ndarray           # (D,)
    cov: np.ndarray            # (D, D)
    extractor: str             # FeatureConfig.extractor_id
    indices: np.ndarray        # which train images were sampled
    train_images: int

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, features=self.features, mean=self.mean, cov=self.cov,
                         extractor=np.array(self.extractor), dataset=np.array(self.dataset),
                         indices=self.indices, train_images=np.array(self.train_images),
                         feature_names=np.array(feature_names_from_id(self.extractor, self.features.shape[1])))

    @classmethod
    def load(cls, path: str | Path) -> "DatasetFeatures":
        path = Path(path)
        if not path.is_file():
            raise MedNNSError(f"{path}: features not found; run `dvc repro dataset_features`")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(dataset=str(z["dataset"]), features=z["features"].astype(np.float32),
                           mean=z["mean"], cov=z["cov"], extractor=str(z["extractor"]),
                           indices=z["indices"], train_images=int(z["train_images"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise MedNNSError(f"{path}: not a features file ({type(e).__name__}: {e})") from None


def feature_names_from_id(extractor: str, dim: int) -> list[str]:
    try:
        fields_ = dict(p.split("=") for p in extractor.split(":")[1:])
        cfg = FeatureConfig(image_size=int(fields_["size"]), seed=int(fields_["seed"]),
                            widths=tuple(int(w) for w in fields_["widths"].split("x")),
                            scales=tuple(int(s) for s in fields_["scales"].split(",")))
        names = feature_names(cfg)
    except (ValueError, KeyError, MedNNSError):
        names = []
    return names if len(names) == dim else [f"f{i}" for i in range(dim)]


def features_of_images(images: np.ndarray, cfg: FeatureConfig, dataset: str = "query",
                       extractor: RandomConvExtractor | None = None) -> DatasetFeatures:
    """Features of a seeded sample of `images` (a train split), with their mean and covariance."""
    check_images(images, dataset)
    idx = sample_indices(len(images), cfg.sample_images, cfg.seed)
    feats = (extractor or RandomConvExtractor(cfg))(images[idx])
    mean = feats.mean(0, dtype=np.float64)
    cov = np.cov(feats, rowvar=False, dtype=np.float64)
    return DatasetFeatures(dataset, feats, mean, cov, cfg.extractor_id, idx, len(images))


def dataset_features(npz_path: str | Path, dataset: str, cfg: FeatureConfig) -> DatasetFeatures:
    """Features of `dataset` from the train split of its (prepared) npz; no other split is read."""
    images = read_train_images(npz_path)
    out = features_of_images(images, cfg, dataset)
    log.info("%s: %s features of %d of %d train images", dataset, out.features.shape[1], len(out.indices),
             len(images))
    return out
