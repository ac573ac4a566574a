"""`mednns data ...` as a user runs it: tables, exit codes, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli, synthetic_arrays, write_npz


def test_help_lists_command_groups():
    result = run_cli("--help")
    assert result.returncode == 0 and "data" in result.stdout


def test_info_prints_spec_and_counts(data_dir):
    write_npz(data_dir / "bloodmnist.npz", synthetic_arrays(classes=8, channels=3,
                                                            sizes={"train": 80, "val": 16, "test": 24}))
    result = run_cli("data", "info", "bloodmnist", "--no-download")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "classes=8" in out and "multi-class" in out and "channels=3" in out
    assert "basophil" in out and "platelet" in out
    total = [line for line in out.splitlines() if "total" in line][0]
    assert ["80", "16", "24"] == [t for t in total.replace("│", " ").split() if t.isdigit()]
    # piped, a long class name is printed whole (no table cuts it)
    assert "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)" in out


def test_info_json_is_the_spec_and_the_counts(data_dir):
    import json

    write_npz(data_dir / "bloodmnist.npz", synthetic_arrays(classes=8, channels=3,
                                                            sizes={"train": 80, "val": 16, "test": 24}))
    result = run_cli("data", "info", "bloodmnist", "--no-download", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["spec"]["num_classes"] == 8 and info["spec"]["splits"] == {"train": 80, "val": 16, "test": 24}
    assert list(info["class_counts"]["train"]) == info["spec"]["label_names"]
    assert {s: sum(c.values()) for s, c in info["class_counts"].items()} == {"train": 80, "val": 16, "test": 24}


def test_check_accepts_a_good_file_and_rejects_a_bad_one(tmp_path, make_npz):
    ok = run_cli("data", "check", str(make_npz("good.npz")))
    assert ok.returncode == 0 and "ok:" in ok.stdout
    arrays = synthetic_arrays()
    del arrays["test_images"]
    bad = write_npz(tmp_path / "bad.npz", arrays)
    result = run_cli("data", "check", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "test_images" in lines[0]


def test_unknown_name_exits_1_with_one_line(data_dir):
    result = run_cli("data", "info", "nosuchmnist", "--no-download")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "unknown dataset 'nosuchmnist'" in result.stderr


REAL = Path(os.environ.get("MEDNNS_DATA_DIR", "../shared/medmnist")) / "bloodmnist.npz"


@pytest.mark.skipif(not REAL.is_file(), reason="real BloodMNIST not on this machine (CI has it)")
def test_info_on_real_bloodmnist():
    result = run_cli("data", "info", str(REAL.resolve()))
    assert result.returncode == 0, result.stderr
    total = [line for line in result.stdout.splitlines() if "total" in line][0]
    assert ["11959", "1712", "3421"] == [t for t in total.replace("│", " ").split() if t.isdigit()]
    assert "classes=8" in result.stdout
