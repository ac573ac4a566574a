"""Every malformed input gets one clear line naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_arrays, write_npz
from mednns.data import load_dataset
from mednns.utils.errors import DataError


def _broken(tmp_path, mutate, name="bad.npz", **kwargs):
    arrays = synthetic_arrays(**kwargs)
    mutate(arrays)
    return write_npz(tmp_path / name, arrays)


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(str(path), download=False, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    msg = _error(tmp_path / "nowhere.npz")
    assert "nowhere.npz" in msg and "not found" in msg


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive at all")
    msg = _error(path)
    assert str(path) in msg and "cannot read" in msg


def test_truncated_file(tmp_path, make_npz):
    path = make_npz("cut.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "cannot read" in _error(path)


def test_missing_key(tmp_path):
    path = _broken(tmp_path, lambda a: a.pop("val_labels"))
    msg = _error(path)
    assert "missing key" in msg and "val_labels" in msg and str(path) in msg


def test_images_and_labels_of_different_lengths(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(train_labels=a["train_labels"][:-3]))
    msg = _error(path)
    assert "train_images has 40 images but train_labels has 37" in msg


def test_wrong_image_dtype(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(test_images=a["test_images"].astype(np.int32)))
    assert "test_images has dtype int32" in _error(path)


def test_wrong_image_shape(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(val_images=a["val_images"].reshape(12, -1)))
    assert "val_images has shape (12, 784)" in _error(path)


def test_non_square_images(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(val_images=a["val_images"][:, :, :20]))
    assert "square" in _error(path)


def test_splits_of_different_resolution(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(val_images=a["val_images"][:, :20, :20]))
    assert "val_images are 20 px" in _error(path)


def test_label_out_of_range_for_given_classes(tmp_path):
    path = _broken(tmp_path, lambda a: a["test_labels"].__setitem__((0, 0), 9))
    msg = _error(path, num_classes=4)
    assert "test_labels has labels in [0, 9]" in msg and "4 classes" in msg


def test_negative_labels(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(train_labels=a["train_labels"].astype(np.int64) - 1))
    assert "labels in [-1" in _error(path)


def test_binary_task_with_a_third_class(tmp_path):
    path = _broken(tmp_path, lambda a: None, classes=3)
    msg = _error(path, task="binary-class", num_classes=2)
    assert "binary-class task has 2 classes" in msg


def test_multi_label_values_must_be_zero_or_one(tmp_path):
    path = _broken(tmp_path, lambda a: a["val_labels"].__setitem__((0, 0), 2), task="multi-label")
    assert "values other than 0 and 1" in _error(path)


def test_nan_in_images(tmp_path):
    def mutate(a):
        a["train_images"] = a["train_images"].astype(np.float32)
        a["train_images"][0, 0, 0] = np.nan

    assert "train_images contains NaN or inf" in _error(_broken(tmp_path, mutate))


def test_inf_in_labels(tmp_path):
    def mutate(a):
        a["val_labels"] = a["val_labels"].astype(np.float64)
        a["val_labels"][1, 0] = np.inf

    assert "val_labels contains NaN or inf" in _error(_broken(tmp_path, mutate))


def test_empty_split(tmp_path):
    path = _broken(tmp_path, lambda a: a.update(test_images=a["test_images"][:0], test_labels=a["test_labels"][:0]))
    assert "split 'test' is empty" in _error(path)


def test_channels_disagree_with_medmnist_spec(data_dir):
    # bloodmnist is RGB in medmnist's INFO; a grey file under its name is refused.
    write_npz(data_dir / "bloodmnist.npz", synthetic_arrays(classes=8, channels=1))
    with pytest.raises(DataError, match=r"1 channel\(s\) but bloodmnist expects 3"):
        load_dataset("bloodmnist", download=False)


def test_channels_disagree_with_requested(tmp_path, make_npz):
    assert "expects 3" in _error(make_npz(channels=1), channels=3)


def test_unknown_dataset_name(data_dir):
    with pytest.raises(DataError, match="unknown dataset 'notamnist'") as info:
        load_dataset("notamnist", download=False)
    assert "bloodmnist" in str(info.value)  # the message lists what is valid


def test_medmnist_file_missing_offline(data_dir):
    with pytest.raises(DataError, match="bloodmnist_64.npz: file not found; set MEDNNS_DATA_DIR"):
        load_dataset("bloodmnist", size=64, download=False)


def test_unsafe_dataset_name_is_rejected(data_dir):
    with pytest.raises(DataError):
        load_dataset("../../etc", download=False)


def test_unsupported_size(data_dir):
    with pytest.raises(DataError, match="unsupported image size 32"):
        load_dataset("bloodmnist", size=32, download=False)
