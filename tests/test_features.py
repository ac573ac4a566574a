"""Dataset features and FID: a deterministic extractor, the train split only, the Fréchet distance
against its closed form (the stages under `dvc repro`: tests/test_metaspace.py)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from scipy import linalg

from conftest import synthetic_arrays, write_npz
from mednns.utils.errors import MedNNSError
from mednns.metaspace.features import (DatasetFeatures, FeatureConfig, RandomConvExtractor, dataset_features,
                                       feature_names, read_train_images)
from mednns.metaspace.fid import fid_matrix, fid_table, frechet_distance, normalised

CFG = FeatureConfig(sample_images=30, image_size=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def truncated_npy(array) -> bytes:
    """An npy member cut in half: a valid header, then too few bytes (reading it raises)."""
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def corrupt_test_npz(path, arrays):
    """val and test as NaN floats, and the test_images member not an array at all."""
    arrays = dict(arrays)
    arrays["val_images"] = np.full(arrays["val_images"].shape, np.nan, dtype=np.float32)
    np.savez(path, **{k: v for k, v in arrays.items() if k != "test_images"})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("test_images.npy", truncated_npy(arrays["test_images"]))
    return path


def test_extractor_is_deterministic_and_documented():
    images = synthetic_arrays(channels=3, size=20, sizes={"train": 12})["train_images"]
    a, b = RandomConvExtractor(CFG)(images), RandomConvExtractor(CFG)(images)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (12, len(feature_names(CFG)))
    other = RandomConvExtractor(FeatureConfig(sample_images=30, image_size=16, seed=1))(images)
    assert not np.allclose(a, other)
    assert CFG.extractor_id != FeatureConfig(image_size=16, seed=1).extractor_id
    assert CFG.extractor_id.startswith("mednns.randconv/1:")
    # each image's features depend on that image only (batching does not change them)
    small = RandomConvExtractor(FeatureConfig(sample_images=30, image_size=16, batch_size=5))(images)
    np.testing.assert_allclose(a, small, rtol=1e-5, atol=1e-6)


def test_features_never_read_the_test_split(tmp_path):
    arrays = synthetic_arrays(classes=3, size=16, sizes={"train": 50, "val": 10, "test": 10})
    path = corrupt_test_npz(tmp_path / "data.npz", arrays)
    with pytest.raises(Exception):  # the test member really is unreadable
        with np.load(path) as z:
            z["test_images"]
    feats = dataset_features(path, "toy", CFG)
    assert feats.features.shape == (30, len(feature_names(CFG))) and feats.train_images == 50
    assert np.isfinite(feats.features).all() and feats.cov.shape == (feats.features.shape[1],) * 2
    np.testing.assert_array_equal(np.sort(feats.indices), feats.indices)
    # the same train images with a clean file: identical features
    clean = write_npz(tmp_path / "clean.npz", arrays)
    np.testing.assert_array_equal(dataset_features(clean, "toy", CFG).features, feats.features)
    feats.save(tmp_path / "f.npz")
    back = DatasetFeatures.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(back.features, feats.features)
    assert back.extractor == CFG.extractor_id and back.dataset == "toy"
    with np.load(tmp_path / "f.npz") as z:
        assert list(z["feature_names"]) == feature_names(CFG)


def test_bad_train_split_is_one_clear_error(tmp_path):
    arrays = synthetic_arrays(size=16)
    del arrays["train_images"]
    with pytest.raises(MedNNSError, match="no train_images"):
        read_train_images(write_npz(tmp_path / "a.npz", arrays))
    arrays = synthetic_arrays(size=16)
    arrays["train_images"] = np.full((4, 16, 16), np.nan)
    with pytest.raises(MedNNSError, match="NaN"):
        read_train_images(write_npz(tmp_path / "b.npz", arrays))
    (tmp_path / "c.npz").write_text("not a zip")
    with pytest.raises(MedNNSError, match="cannot read"):
        read_train_images(tmp_path / "c.npz")
    with pytest.raises(MedNNSError, match="file not found"):
        read_train_images(tmp_path / "missing.npz")


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a, b = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T  # commuting: sqrt(C1 C2) has eigenvalues sqrt(ab)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0, abs=1e-9)
    # general (non-commuting) covariances: the textbook formula with scipy's matrix square root
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5))
    c3, c4 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    textbook = np.sum((mu1 - mu2) ** 2) + np.trace(c3 + c4 - 2 * np.real(linalg.sqrtm(c3 @ c4)))
    assert frechet_distance(mu1, c3, mu2, c4) == pytest.approx(textbook, rel=1e-6)
    with pytest.raises(MedNNSError, match="dimensions differ"):
        frechet_distance(mu1, c1, mu1[:3], c1[:3, :3])


def test_fid_table_is_a_symmetric_matrix_with_zero_diagonal():
    rng = np.random.default_rng(1)
    stats = {n: (rng.normal(size=4), np.cov(rng.normal(size=(30, 4)) * (i + 1), rowvar=False))
             for i, n in enumerate(["c", "a", "b"])}
    table = fid_table(stats)
    assert list(table.columns) == ["dataset", "reference", "fid"] and len(table) == 9
    m = fid_matrix(table)
    assert list(m.index) == ["a", "b", "c"] == list(m.columns)
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T)
    assert (np.diag(m) == 0).all() and (m.to_numpy()[~np.eye(3, dtype=bool)] > 0).all()
    n = normalised(m, ["a", "c"])
    assert n[0, 1] == pytest.approx(1.0)
    with pytest.raises(MedNNSError, match="no row for zz"):
        normalised(m, ["a", "zz"])
