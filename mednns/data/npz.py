"""Reading and validating MedMNIST-layout npz files (ours, medmnist's or a user's)."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mednns.data.spec import SPLITS, DatasetSpec, Task
from mednns.utils.errors import DataError

KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))
MIN_SIZE = 8           # pixels: smaller images carry too little for any network in the space
MAX_CLASSES = 10_000   # an inferred class count above this is a damaged label, not a dataset


def _memory_limit() -> int:
    """Half of this machine's memory: what a dataset's arrays may declare before they are read."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def _what_it_is(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array"
    if head[:1] == b"\x80":
        return "it is a pickle file, which MedNNS never reads"
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        return "a truncated or damaged zip archive"
    return "it is not a zip archive"


def _check_dtype(where: str, key: str, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise DataError(f"{where}: {key} is an object array (pickled Python objects); MedNNS does not read "
                        "pickled arrays (they can run code): store plain numeric arrays")
    kinds = "uf" if key.endswith("_images") else "uifb"
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        expected = "uint8 (0-255)" if key.endswith("_images") else "integers"
        raise DataError(f"{where}: {key} has dtype {dtype}; expected {expected}")


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, key: str) -> tuple[tuple, int]:
    """(shape, bytes) a member declares, checked against what the member holds, before reading it."""
    from numpy.lib import format as npy

    with zf.open(info) as f:
        version = npy.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(f)
        else:
            shape, _, dtype = npy._read_array_header(f, version)
        offset = f.tell()
    _check_dtype(where, key, dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size - offset:
        raise DataError(f"{where}: {key} declares shape {shape} ({nbytes:,} bytes) but holds "
                        f"{info.file_size - offset:,} bytes: the file is truncated or damaged; re-download it "
                        "or re-save it with numpy.savez")
    return shape, nbytes


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load the six arrays of a MedMNIST npz, or raise one DataError naming the file and problem.

    Every member's header is checked before anything is read (dtype, pickled objects, declared size
    against the member's size and this machine's memory), so a damaged or hostile file is refused
    without allocating what it declares."""
    from numpy.lib import format as npy

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder, not an npz file; give the path of the .npz file")
    if not path.is_file():
        raise DataError(f"{path}: file not found (relative paths start at the current folder, {Path.cwd()})")
    where = str(path)
    try:
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: cannot read: not an npz archive ({_what_it_is(path)}); save the six arrays "
                            f"{', '.join(KEYS)} with numpy.savez")
        with zipfile.ZipFile(path) as zf:
            members = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
            missing = [k for k in KEYS if k not in members]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}; a MedMNIST npz holds "
                                f"{', '.join(KEYS)}")
            declared = {k: _header(zf, members[k], where, k) for k in KEYS}
            total = sum(nbytes for _, nbytes in declared.values())
            if total > _memory_limit():
                raise DataError(f"{path}: its arrays need {total / 2**30:.1f} GiB, more than half of this "
                                f"machine's memory; use a smaller file (fewer images or a smaller size)")
            arrays = {}
            for k in KEYS:
                with zf.open(members[k]) as f:
                    arrays[k] = npy.read_array(f, allow_pickle=False)
            return arrays
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"{path}: cannot read: permission denied; check the file's permissions") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError,
            NotImplementedError) as e:
        raise DataError(f"{path}: cannot read: a damaged npz file ({type(e).__name__}: {e}); re-download it "
                        "or re-save it with numpy.savez") from None


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
        if images.shape[1] < MIN_SIZE:
            raise DataError(f"{where}: {split}_images are {images.shape[1]}x{images.shape[2]} px; expected at "
                            f"least {MIN_SIZE}x{MIN_SIZE}")
        if len(images) == 0:
            raise DataError(f"{where}: split '{split}' is empty")
        if split == "train" and len(images) < 2:
            raise DataError(f"{where}: train split has 1 image; training needs at least 2")
        if labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] == 0):
            raise DataError(f"{where}: {split}_labels has shape {labels.shape}; expected (N,), (N, 1) "
                            "or (N, labels)")
        if len(images) != len(labels):
            raise DataError(f"{where}: {split}_images has {len(images)} images but {split}_labels "
                            f"has {len(labels)} labels")
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


def _ranges(values: np.ndarray) -> str:
    """[3, 4, 5, 8] -> '3-5, 8'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts[:6]) + (", ..." if len(parts) > 6 else "")


def check_classes_present(labels: dict[str, np.ndarray], where: str, num_classes: int) -> None:
    """An inferred class count must be the dataset's: every class 0..n-1 occurs in some split.

    A label of 9 in a 3-class file would otherwise make 10 classes, 3-8 empty everywhere.
    `labels` are normalised ones (int64 (N, 1), in range)."""
    present = np.zeros(num_classes, dtype=bool)
    for lab in labels.values():
        present[np.unique(lab)] = True
    missing = np.flatnonzero(~present)
    if len(missing):
        raise DataError(f"{where}: labels go up to {num_classes - 1} but class(es) {_ranges(missing)} occur in "
                        f"no split; if the dataset really has {num_classes} classes, give --num-classes "
                        f"{num_classes}, otherwise fix the labels (class indices 0 to classes-1)")


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
    # The range is checked on the stored values: a cast first would wrap what int64 cannot hold.
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{where}: {key} has labels in [{low}, {high}] but the {task.value} task has "
                        f"{num_classes} classes (0-{num_classes - 1})")
    return labels.reshape(-1, 1).astype(np.int64)


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
    try:
        task = Task.parse(task) if isinstance(task, str) else (task or inferred_task)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    inferred = num_classes is None
    if inferred:
        num_classes = 2 if task is Task.BINARY else inferred_n
        if num_classes > MAX_CLASSES:
            what = "labels per image" if task is Task.MULTI_LABEL else "classes (the largest label + 1)"
            raise DataError(f"{where}: {num_classes:,} {what}, more than {MAX_CLASSES:,}; labels must be class "
                            "indices 0 to classes-1")
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
    if inferred and task is not Task.MULTI_LABEL:
        check_classes_present(labels, where, num_classes)
    spec = DatasetSpec(
        name=name, task=task, channels=found_channels, num_classes=num_classes,
        image_size=int(train.shape[1]), splits={s: int(len(images[s])) for s in SPLITS},
        label_names=tuple(label_names) or tuple(str(i) for i in range(num_classes)), source=source,
    )
    return MedDataset(spec, images, labels)
