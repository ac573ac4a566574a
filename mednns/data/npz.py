"""Reading and validating MedMNIST-layout npz files (ours, medmnist's or a user's)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from mednns.data.spec import SPLITS, DatasetSpec, Task
from mednns.utils.errors import DataError

KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load the six arrays of a MedMNIST npz, or raise one DataError naming the file and problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)}; a MedMNIST npz holds "
                    f"{', '.join(KEYS)}"
                )
            return {k: npz[k] for k in KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        why = "not an npz archive" if "pickle" in str(e) else str(e)
        raise DataError(f"{path}: cannot read as an npz file ({why}); re-download it or re-save it "
                        "with numpy.savez") from None


def check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Shape, dtype, length and finiteness checks that hold for every task."""
    size = channels = None
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise DataError(f"{where}: {split}_images has dtype {images.dtype}; expected uint8 (0-255)")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise DataError(f"{where}: {split}_images has shape {images.shape}; expected "
                            "(N, H, W) or (N, H, W, C) with C = 1 or 3")
        if images.shape[1] != images.shape[2]:
            raise DataError(f"{where}: {split}_images are {images.shape[1]}x{images.shape[2]}; "
                            "expected square images")
        if len(images) == 0:
            raise DataError(f"{where}: split '{split}' is empty")
        if len(images) != len(labels):
            raise DataError(f"{where}: {split}_images has {len(images)} images but {split}_labels "
                            f"has {len(labels)} labels")
        if labels.ndim not in (1, 2):
            raise DataError(f"{where}: {split}_labels has shape {labels.shape}; expected (N,), (N, 1) "
                            "or (N, labels)")
        if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
                or labels.dtype == np.bool_):
            raise DataError(f"{where}: {split}_labels has dtype {labels.dtype}; expected integers")
        for key, arr in ((f"{split}_images", images), (f"{split}_labels", labels)):
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise DataError(f"{where}: {key} contains NaN or inf values")
        if np.issubdtype(labels.dtype, np.floating) and not np.array_equal(labels, np.round(labels)):
            raise DataError(f"{where}: {split}_labels has non-integer values; expected class indices")
        if np.issubdtype(images.dtype, np.floating) and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{where}: {split}_images has values outside 0-255")
        this_channels = 1 if images.ndim == 3 else images.shape[3]
        if size is None:
            size, channels = images.shape[1], this_channels
        elif (images.shape[1], this_channels) != (size, channels):
            raise DataError(f"{where}: {split}_images are {images.shape[1]} px with {this_channels} "
                            f"channel(s) but train_images are {size} px with {channels}")


def infer_task(arrays: dict[str, np.ndarray]) -> tuple[Task, int]:
    """Task and class count of a user's npz: a label matrix is multi-label, 2 classes is binary."""
    labels = [arrays[f"{s}_labels"] for s in SPLITS]
    if labels[0].ndim == 2 and labels[0].shape[1] > 1:
        return Task.MULTI_LABEL, labels[0].shape[1]
    top = int(max(lab.max() for lab in labels))
    n = max(top + 1, 2)
    return (Task.BINARY if n == 2 else Task.MULTI_CLASS), n


def normalise_labels(labels: np.ndarray, task: Task, num_classes: int, where: str, key: str) -> np.ndarray:
    """Check labels against the task and return int64 (N, 1) or, multi-label, (N, L)."""
    if task is Task.MULTI_LABEL:
        if labels.ndim != 2 or labels.shape[1] != num_classes:
            raise DataError(f"{where}: {key} has shape {labels.shape}; a multi-label task with "
                            f"{num_classes} labels needs (N, {num_classes})")
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"{where}: {key} has values other than 0 and 1 (multi-label task)")
        return labels.astype(np.int64)
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise DataError(f"{where}: {key} has shape {labels.shape}; a {task.value} task needs (N, 1)")
    labels = labels.reshape(-1, 1).astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{where}: {key} has labels in [{low}, {high}] but the {task.value} task has "
                        f"{num_classes} classes (0-{num_classes - 1})")
    return labels


class MedDataset:
    """A validated dataset: a spec plus uint8 images (N, H, W, C) and int64 labels per split."""

    def __init__(self, spec: DatasetSpec, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]):
        self.spec, self._images, self._labels = spec, images, labels

    def images(self, split: str) -> np.ndarray:
        return self._images[split]

    def labels(self, split: str) -> np.ndarray:
        return self._labels[split]

    def class_counts(self, split: str) -> list[int]:
        """Images per class (positives per label for multi-label tasks)."""
        labels = self._labels[split]
        if self.spec.task is Task.MULTI_LABEL:
            return labels.sum(axis=0).astype(int).tolist()
        return np.bincount(labels[:, 0], minlength=self.spec.num_classes).astype(int).tolist()

    def __repr__(self) -> str:
        return f"MedDataset({self.spec.name!r}, {self.spec.task.value}, {self.spec.splits})"


def build_dataset(arrays: dict[str, np.ndarray], where: str, name: str, source: str, *,
                  task: Task | str | None = None, num_classes: int | None = None,
                  channels: int | None = None, label_names: tuple[str, ...] = ()) -> MedDataset:
    """Validate raw arrays and turn them into a MedDataset; `task`/`num_classes`/`channels` are
    what the caller expects (medmnist's INFO, or the user), inferred from the data when None."""
    check_arrays(arrays, where)
    inferred_task, inferred_n = infer_task(arrays)
    task = Task.parse(task) if isinstance(task, str) else (task or inferred_task)
    num_classes = num_classes or inferred_n
    train = arrays["train_images"]
    found_channels = 1 if train.ndim == 3 else train.shape[3]
    if channels is not None and channels != found_channels:
        raise DataError(f"{where}: images have {found_channels} channel(s) but {name} expects "
                        f"{channels}")
    images, labels = {}, {}
    for split in SPLITS:
        img = arrays[f"{split}_images"]
        if np.issubdtype(img.dtype, np.floating):
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        images[split] = np.ascontiguousarray(img if img.ndim == 4 else img[..., None])
        labels[split] = normalise_labels(arrays[f"{split}_labels"], task, num_classes, where,
                                         f"{split}_labels")
    spec = DatasetSpec(
        name=name, task=task, channels=found_channels, num_classes=num_classes,
        image_size=int(train.shape[1]), splits={s: int(len(images[s])) for s in SPLITS},
        label_names=tuple(label_names) or tuple(str(i) for i in range(num_classes)), source=source,
    )
    return MedDataset(spec, images, labels)
