"""One entry point to get a validated dataset by MedMNIST name or npz path."""

from __future__ import annotations

from pathlib import Path

from mednns.data.catalog import Source, resolve
from mednns.data.npz import MedDataset, build_dataset, read_arrays
from mednns.data.spec import Task
from mednns.utils.errors import DataError


def load_dataset(name_or_path: str | Path, size: int = 28, root: str | Path | None = None, *,
                 task: Task | str | None = None, num_classes: int | None = None,
                 channels: int | None = None, name: str | None = None,
                 download: bool = True) -> MedDataset:
    """Load and validate a dataset.

    A MedMNIST flag takes its task, classes, channels and label names from medmnist's INFO, and the
    file must agree with them. A user's npz has them inferred from its labels unless given.
    """
    source = resolve(name_or_path, size=size, root=root, download=download)
    return load_source(source, task=task, num_classes=num_classes, channels=channels, name=name)


def load_source(source: Source, *, task: Task | str | None = None, num_classes: int | None = None,
                channels: int | None = None, name: str | None = None) -> MedDataset:
    arrays = read_arrays(source.path)
    info = source.info
    if info is not None:
        labels = tuple(info["label"][str(i)] for i in range(len(info["label"])))
        known = Task.parse(info["task"])
        given_task = Task.parse(task) if isinstance(task, str) else task
        if given_task is not None and given_task is not known:
            raise DataError(f"{source.path}: --task {given_task.value}, but {source.name} is {known.value} in "
                            "medmnist's INFO; leave --task out for a MedMNIST dataset")
        if num_classes is not None and num_classes != len(labels):
            raise DataError(f"{source.path}: --num-classes {num_classes}, but {source.name} has {len(labels)} "
                            "classes in medmnist's INFO; leave --num-classes out for a MedMNIST dataset")
        # The labels are checked against INFO's classes: an empty class is fine in a MedMNIST subset.
        return build_dataset(arrays, str(source.path), source.name, str(source.path),
                             task=known, num_classes=len(labels), channels=info["n_channels"],
                             label_names=labels)
    return build_dataset(arrays, str(source.path), name or source.name, str(source.path),
                         task=task, num_classes=num_classes, channels=channels)
