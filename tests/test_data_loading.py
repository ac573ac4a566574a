"""Loading every task type, as MedMNIST names and as a user's own npz, into specs and tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medmnist.info import INFO

from conftest import synthetic_arrays, write_npz
from mednns.data import DatasetSpec, Task, load_dataset, to_tensor


@pytest.mark.parametrize("flag, task, classes, channels", [
    ("bloodmnist", Task.MULTI_CLASS, 8, 3),
    ("pneumoniamnist", Task.BINARY, 2, 1),
    ("chestmnist", Task.MULTI_LABEL, 14, 1),
    ("retinamnist", Task.ORDINAL, 5, 3),
])
def test_medmnist_flags_take_task_and_classes_from_info(data_dir, flag, task, classes, channels):
    kind = "multi-label" if task is Task.MULTI_LABEL else "multi-class"
    write_npz(data_dir / f"{flag}.npz", synthetic_arrays(task=kind, classes=classes, channels=channels))
    ds = load_dataset(flag, download=False)
    assert (ds.spec.task, ds.spec.num_classes, ds.spec.channels) == (task, classes, channels)
    assert ds.spec.splits == {"train": 40, "val": 12, "test": 12}
    assert list(ds.spec.label_names) == list(INFO[flag]["label"].values())
    expected_label_shape = (40, classes) if task is Task.MULTI_LABEL else (40, 1)
    assert ds.labels("train").shape == expected_label_shape
    assert ds.images("train").shape == (40, 28, 28, channels)


def test_medmnist_sizes_use_their_own_file(data_dir):
    write_npz(data_dir / "bloodmnist_64.npz", synthetic_arrays(classes=8, channels=3, size=64))
    assert load_dataset("bloodmnist", size=64, download=False).spec.image_size == 64


@pytest.mark.parametrize("kind, classes, expected", [
    ("multi-class", 2, Task.BINARY),
    ("multi-class", 6, Task.MULTI_CLASS),
    ("multi-label", 3, Task.MULTI_LABEL),
])
def test_user_npz_task_and_classes_are_inferred(make_npz, kind, classes, expected):
    ds = load_dataset(str(make_npz("My Scans.npz", task=kind, classes=classes)))
    assert ds.spec.task is expected and ds.spec.num_classes == classes
    assert ds.spec.name == "my_scans"


def test_user_npz_task_can_be_given(make_npz):
    ds = load_dataset(str(make_npz(classes=3)), task="ordinal-regression", num_classes=5, name="grades")
    assert (ds.spec.task, ds.spec.num_classes, ds.spec.name) == (Task.ORDINAL, 5, "grades")


def test_user_npz_in_data_root_loads_by_name(data_dir):
    write_npz(data_dir / "mydata.npz", synthetic_arrays(classes=3))
    assert load_dataset("mydata").spec.num_classes == 3


def test_class_counts(make_npz):
    ds = load_dataset(str(make_npz(classes=4)))
    assert ds.class_counts("train") == [10, 10, 10, 10]
    assert sum(ds.class_counts("val")) == 12


def test_spec_round_trips_through_a_dict(make_npz):
    spec = load_dataset(str(make_npz(task="multi-label", classes=3))).spec
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


def test_tensors_are_normalised_to_minus_one_one():
    images = np.array([[[0, 255], [128, 255]]], dtype=np.uint8)
    x = to_tensor(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0


def test_tensors_change_channels_and_resolution():
    rgb = np.zeros((2, 28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red -> luma 0.299
    grey = to_tensor(rgb, channels=1, size=64)
    assert grey.shape == (2, 1, 64, 64)
    assert torch.allclose(grey, torch.full_like(grey, (0.299 - 0.5) / 0.5), atol=1e-5)
    mono = np.full((1, 28, 28), 51, dtype=np.uint8)
    three = to_tensor(mono, channels=3, size=14)
    assert three.shape == (1, 3, 14, 14)
    assert torch.allclose(three, torch.full_like(three, (51 / 255 - 0.5) / 0.5), atol=1e-5)
