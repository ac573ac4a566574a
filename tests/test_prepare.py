"""The prepare stage: a validated copy with a manifest, all or nothing, re-run for free."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import synthetic_arrays, write_npz
from mednns.data import load_prepared, prepare
from mednns.utils.errors import DataError
from mednns.utils.io import sha256_file


def test_prepare_writes_data_and_manifest(tmp_path, make_npz):
    src = make_npz("scans.npz", classes=3, channels=3)
    out = tmp_path / "prepared" / "scans"
    manifest = prepare(str(src), out)
    assert sorted(p.name for p in out.iterdir()) == ["data.npz", "manifest.json"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["sha256"]["data.npz"] == sha256_file(out / "data.npz")
    assert on_disk["source"] == {"file": "scans.npz", "sha256": sha256_file(src)}
    assert on_disk["spec"]["task"] == "multi-class" and on_disk["spec"]["channels"] == 3
    raw = np.load(src)
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        assert on_disk["counts"][split]["total"] == n
        assert on_disk["counts"][split]["per_class"] == np.bincount(raw[f"{split}_labels"][:, 0]).tolist()
    back = load_prepared(out)
    assert back.spec.name == "scans"
    np.testing.assert_array_equal(back.images("val")[..., :], raw["val_images"])


def test_failed_prepare_leaves_existing_output_untouched(tmp_path, make_npz):
    out = tmp_path / "prepared" / "scans"
    prepare(str(make_npz("scans.npz")), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    arrays = synthetic_arrays()
    arrays["val_labels"] = arrays["val_labels"][:3]
    bad = write_npz(tmp_path / "bad" / "scans.npz", arrays)
    with pytest.raises(DataError):
        prepare(str(bad), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == ["scans"]  # no temporary leftovers


def test_tampered_prepared_data_is_refused(tmp_path, make_npz):
    out = tmp_path / "scans"
    prepare(str(make_npz("scans.npz")), out)
    data = out / "data.npz"
    data.write_bytes(data.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="sha256 differs from the manifest"):
        load_prepared(out)


def _dvc(project, *args):
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True,
                          text=True, env={**os.environ}, timeout=300)


def test_dvc_prepare_stage_runs_once_per_dataset_and_then_is_up_to_date(dvc_project, data_dir):
    write_npz(data_dir / "toya.npz", synthetic_arrays(classes=3))
    write_npz(data_dir / "toyb.npz", synthetic_arrays(task="multi-label", classes=4, channels=3))
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    params["datasets"] = ["toya", "toyb"]
    (dvc_project / "params.yaml").write_text(yaml.safe_dump(params))

    first = _dvc(dvc_project, "repro", "prepare")
    assert first.returncode == 0, first.stderr + first.stdout
    for name in ("toya", "toyb"):
        manifest = json.loads((dvc_project / f"data/prepared/{name}/manifest.json").read_text())
        assert manifest["spec"]["name"] == name
    assert json.loads((dvc_project / "data/prepared/toyb/manifest.json").read_text())["spec"]["task"] == "multi-label"

    status = _dvc(dvc_project, "status", "prepare")
    assert "up to date" in status.stdout
    again = _dvc(dvc_project, "repro", "prepare")
    assert again.returncode == 0 and "Running stage" not in again.stdout


def test_dvc_prepare_stage_fails_cleanly_on_a_bad_dataset(dvc_project, data_dir):
    arrays = synthetic_arrays()
    arrays["train_labels"] = arrays["train_labels"][:5]
    write_npz(data_dir / "broken.npz", arrays)
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    params["datasets"] = ["broken"]
    (dvc_project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _dvc(dvc_project, "repro", "prepare")
    assert result.returncode != 0
    assert "train_images has 40 images but train_labels has 5 labels" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (dvc_project / "data/prepared/broken").exists()
