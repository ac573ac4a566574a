"""The error contract, through the real `mednns` command as a user types it: an expected failure is one
line naming the file or value and the fix, exit 1 (2 for wrong usage); nothing is destroyed or
half-written; a bug keeps its traceback, and --debug / MEDNNS_DEBUG=1 show it for every error.

Each test here is one of the failures found by trying the CLI with damaged files and wrong arguments
(issue 15); each failed before the fix."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, error_lines, invoke_cli, run_cli, snapshot, synthetic_arrays, write_npz
from servers import free_port

def one_line(result, *needles: str, code: int = 1) -> str:
    """The single error line of a failed command, which must hold every needle."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def usage_error(result, *needles: str) -> str:
    """Wrong usage: exit 2, click's usage lines, an 'Error:' line naming the value, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    line = [l for l in result.stderr.splitlines() if l.startswith("Error:")][0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def run_patched(setup: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    """The real `mednns` entry point in a fresh interpreter, after `setup` (a stand-in for what cannot
    be arranged here, such as a full disk)."""
    code = textwrap.dedent(setup) + textwrap.dedent(f"""
        import sys
        from mednns.cli import main
        sys.argv = ["mednns", *{list(args)!r}]
        main()
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture
def good(tmp_path) -> Path:
    return write_npz(tmp_path / "good.npz", synthetic_arrays(classes=3))


# ---------------------------------------------------------------------------------------------------
# nothing destroyed, nothing half-written


def test_prepare_refuses_a_folder_holding_files_it_did_not_write(tmp_path, good):
    out = tmp_path / "some" / "existing"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("precious")
    (out / "results.csv").write_text("a,b\n")
    before = snapshot(out)
    one_line(run_cli("data", "prepare", str(good), "--out", str(out)), str(out), "notes.txt", "--out")
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["existing"]  # no temporary folder left


def test_prepare_writes_a_new_or_empty_folder_and_replaces_its_own_copy(tmp_path, good):
    out = tmp_path / "empty"
    out.mkdir()
    assert run_cli("data", "prepare", str(good), "--out", str(out)).returncode == 0
    first = snapshot(out)
    assert set(first) == {"data.npz", "manifest.json"}
    again = run_cli("data", "prepare", str(good), "--out", str(out))  # its own earlier copy: replaced
    assert again.returncode == 0, again.stderr
    assert snapshot(out)["data.npz"] == first["data.npz"]


def test_prepare_inside_an_existing_file(tmp_path, good):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    one_line(run_cli("data", "prepare", str(good), "--out", str(blocker / "sub")), "afile is a file")
    assert blocker.read_text() == "x"


def test_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, good):
    # A stand-in for a full disk: no small file system can be mounted here, so numpy's write is replaced
    # by one that writes half a file and then fails as a full disk does (OSError ENOSPC).
    full_disk = """
        import errno
        import numpy as np

        def full_disk(file, *args, **kwargs):
            with open(file, "wb") as f:
                f.write(b"\\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")

        np.savez = full_disk
    """
    out = tmp_path / "prepared" / "good"
    result = run_patched(full_disk, "data", "prepare", str(good), "--out", str(out))
    one_line(result, str(out), "no space left")
    assert not out.exists() and list((tmp_path / "prepared").iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# labels


def test_a_label_that_skips_classes_is_refused_unless_the_class_count_is_given(tmp_path):
    arrays = synthetic_arrays(classes=3)
    arrays["test_labels"][0, 0] = 9  # a 3-class file with one test label of 9
    path = write_npz(tmp_path / "gap.npz", arrays)
    one_line(run_cli("data", "check", str(path)), str(path), "3-8", "--num-classes 10")
    ok = run_cli("data", "check", str(path), "--num-classes", "10")
    assert ok.returncode == 0 and "10 classes" in ok.stdout
    one_line(run_cli("data", "prepare", str(path), "--out", str(tmp_path / "out")), "--num-classes")
    assert run_cli("data", "prepare", str(path), "--out", str(tmp_path / "out"), "--num-classes", "10").returncode == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["spec"]["num_classes"] == 10


def test_a_medmnist_name_checks_labels_against_medmnist_info(data_dir):
    arrays = synthetic_arrays(classes=8, channels=3)
    for split in ("train", "val", "test"):  # class 7 nowhere: a subset may lack a class, INFO says 8
        arrays[f"{split}_labels"][arrays[f"{split}_labels"] == 7] = 0
    write_npz(data_dir / "bloodmnist.npz", arrays)
    ok = run_cli("data", "check", str(data_dir / "bloodmnist.npz"))
    assert ok.returncode == 0 and "8 classes" in ok.stdout, ok.stderr
    one_line(run_cli("data", "info", "bloodmnist", "--no-download", "--num-classes", "5"),
             "--num-classes 5", "8 classes", "INFO")
    arrays["val_labels"][0, 0] = 8  # bloodmnist has classes 0-7
    write_npz(data_dir / "bloodmnist.npz", arrays)
    one_line(run_cli("data", "check", str(data_dir / "bloodmnist.npz")), "val_labels", "[0, 8]", "8 classes")


def test_labels_with_a_zero_sized_axis_and_images_of_zero_pixels(tmp_path):
    arrays = synthetic_arrays(classes=3)
    arrays["train_labels"] = np.zeros((40, 0), np.uint8)
    one_line(run_cli("data", "check", str(write_npz(tmp_path / "l.npz", arrays))), "train_labels", "(40, 0)")
    arrays = synthetic_arrays(classes=3)
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((len(arrays[f"{split}_labels"]), 0, 0), np.uint8)
    one_line(run_cli("data", "check", str(write_npz(tmp_path / "i.npz", arrays))), "0x0")


# ---------------------------------------------------------------------------------------------------
# files that are not what they claim


def test_an_object_array_member_is_named_and_not_read(tmp_path):
    arrays = synthetic_arrays(classes=3)
    arrays["val_labels"] = np.array([object()] * 12, dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, **arrays)
    one_line(run_cli("data", "check", str(path)), str(path), "val_labels", "pickled")


def test_a_folder_given_as_the_dataset_file(tmp_path):
    folder = tmp_path / "scans.npz"
    folder.mkdir()
    one_line(run_cli("data", "info", str(folder)), str(folder), "a folder")


def test_files_that_are_not_npz_archives(tmp_path):
    npy = tmp_path / "one.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    one_line(run_cli("data", "check", str(npy)), str(npy), "single .npy array", "numpy.savez")
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"train_images": [1, 2]}))
    one_line(run_cli("data", "check", str(pickled)), "pickle file")


def test_a_huge_declared_shape_in_a_tiny_file_is_refused_before_reading(tmp_path):
    import io
    import zipfile

    from numpy.lib import format as npy

    arrays = synthetic_arrays(classes=3)
    path = write_npz(tmp_path / "huge.npz", arrays)
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 9, 28, 28)})
    with zipfile.ZipFile(path, "a") as zf:  # a second train_images member, read last: it wins
        zf.writestr("train_images.npy", header.getvalue() + b"\0" * 100)
    one_line(run_cli("data", "check", str(path)), "train_images", "declares shape (1000000000, 28, 28)",
             "truncated")


# ---------------------------------------------------------------------------------------------------
# the meta-space and the supernets


@pytest.fixture
def select_args(selection_space):
    metaspace, supernets = selection_space
    return ["--metaspace", str(metaspace), "--supernets", str(supernets), "--k", "2", "--finetune-epochs", "0",
            "--zoo-only"]


def test_select_export_with_mlflow_unreachable_leaves_no_file(tmp_path, good, select_args):
    out = tmp_path / "out"
    result = run_cli("select", str(good), *select_args, "--export", str(out / "m.onnx"),
                     env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    one_line(result, "unreachable", "MLFLOW_TRACKING_URI")
    assert not out.exists() or not any(out.iterdir())


def test_select_registers_once_and_its_card_states_it(tmp_path, good, select_args, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # the embedded store, mlflow.db in the current folder
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sel" / "m.onnx"
    first = run_cli("select", str(good), *select_args, "--export", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    entry = re.search(r"registered as (models:/\S+)", first.stdout).group(1)
    assert entry == "models:/mednns.selected.good/1"
    assert f"Registered in MLflow as `{entry}`." in out.with_suffix(".md").read_text()
    digest = out.read_bytes()
    again = invoke_cli("select", str(good), *select_args, "--export", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert out.read_bytes() == digest  # the same selection: the same file, so the same version
    assert re.search(r"registered as (models:/\S+)", again.stdout).group(1) == entry


def test_outputs_appear_together_or_not_at_all(tmp_path, good, selection_space, one_thread):
    """The ONNX file and the card are renamed into place only after the registration succeeded; the card
    states a registration only when there was one."""
    from mednns.data import load_dataset
    from mednns.metaspace import MetaSpace
    from mednns.selector import FinetuneConfig, deliver, select
    from mednns.utils.errors import MedNNSError
    from mednns.zoo import SubnetStore

    metaspace, supernets = selection_space
    ds = load_dataset(str(good))
    sel = select(ds, MetaSpace.load(metaspace), SubnetStore(supernets), k=2, finetune=FinetuneConfig(epochs=0))
    out = tmp_path / "out"
    seen = {}

    def failing(delivery):
        seen["card"] = delivery.card.read_text()
        seen["onnx"] = delivery.onnx.path.is_file()
        raise MedNNSError("MLflow server is unreachable")

    with pytest.raises(MedNNSError):
        deliver(sel, ds, out / "m.onnx", register=failing)
    assert seen["onnx"] and "Registered" not in seen["card"]  # what the registry would have logged
    assert list(out.iterdir()) == []
    done = deliver(sel, ds, out / "m.onnx", register=lambda d: "models:/mednns.selected.good/7")
    assert sorted(p.name for p in out.iterdir()) == ["m.md", "m.onnx"]
    assert "Registered in MLflow as `models:/mednns.selected.good/7`." in done.card.read_text()
    plain = deliver(sel, ds, out / "plain.onnx")
    assert "Registered" not in plain.card.read_text() and plain.registered is None


def test_damaged_candidates_table_and_config_without_a_key(tmp_path, good, selection_space, select_args):
    metaspace, supernets = selection_space
    table = tmp_path / "table"
    shutil.copytree(metaspace, table)
    (table / "candidates.parquet").write_bytes((metaspace / "candidates.parquet").read_bytes()[:100])
    args = ["--supernets", str(supernets), "--k", "2", "--pretrained", "efficientnet_lite0"]
    one_line(run_cli("select", str(good), "--metaspace", str(table), *args), "candidates.parquet", "train_metaspace")
    config = tmp_path / "config"
    shutil.copytree(metaspace, config)
    conf = json.loads((config / "config.json").read_text())
    del conf["features"]
    (config / "config.json").write_text(json.dumps(conf))
    one_line(invoke_cli("select", str(good), "--metaspace", str(config), *args), "config.json", "features")


def test_checkpoints_that_are_random_bytes_pickles_or_of_another_search_space(tmp_path, good, selection_space):
    import torch

    import synthetic
    from mednns.data.spec import DatasetSpec
    from mednns.nn.checkpoint import read_checkpoint
    from mednns.nn.space import SearchSpace

    metaspace, supernets = selection_space
    sources = [p.stem for p in supernets.glob("*.pt")]

    def folder(name, write):
        path = tmp_path / name
        path.mkdir()
        for source in sources:
            write(path / f"{source}.pt", source)
        return ["--metaspace", str(metaspace), "--supernets", str(path), "--k", "2", "--pretrained", "efficientnet_lite0"]

    rng = np.random.default_rng(0)
    args = folder("random", lambda p, s: p.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()))
    line = one_line(run_cli("select", str(good), *args), "not a readable MedNNS checkpoint")
    args = folder("pickled", lambda p, s: p.write_bytes(pickle.dumps({"state_dict": "x"}, protocol=4)))
    line += one_line(invoke_cli("select", str(good), *args), "not a readable MedNNS checkpoint")
    assert "weights_only" not in line  # torch's advice (weights_only=False) would run the file's code

    def other_space(p, source):
        spec = DatasetSpec.from_dict(read_checkpoint(supernets / f"{source}.pt")["spec"])
        synthetic.random_supernet(p, spec, SearchSpace())

    one_line(run_cli("select", str(good), *folder("other", other_space)), "not in the search space")

    def mismatched(p, source):  # the config of one space, the weights of another
        payload = read_checkpoint(supernets / f"{source}.pt")
        payload["state_dict"] = read_checkpoint(tmp_path / "other" / f"{source}.pt")["state_dict"]
        torch.save(payload, p)

    one_line(invoke_cli("select", str(good), *folder("mismatched", mismatched)), "weights do not fit")
    broken = tmp_path / "arch"
    shutil.copytree(metaspace, broken)
    table = pd.read_parquet(broken / "candidates.parquet")
    table["arch_json"] = '{"depths":[1],"kernels":[3,3],"expands":[2]}'
    table.to_parquet(broken / "candidates.parquet", index=False)
    one_line(invoke_cli("select", str(good), "--metaspace", str(broken), "--supernets", str(supernets), "--k", "2",
                        "--pretrained", "efficientnet_lite0"), "not an arch of the MBConv space")


def test_the_missing_metaspace_message_names_the_option_and_the_folder(tmp_path, good):
    line = one_line(run_cli("select", str(good), cwd=tmp_path), "--metaspace", "models/metaspace",
                    "relative paths start at the current folder")
    assert str(tmp_path) in line


# ---------------------------------------------------------------------------------------------------
# arguments, checked before any work


def test_wrong_device_log_level_and_export_name_are_refused_before_any_work(tmp_path, good):
    usage_error(run_cli("select", str(good), "--device", "tpu"), "--device", "tpu")
    usage_error(run_cli("--log-level", "FOO", "data", "check", str(good)), "--log-level", "FOO")
    usage_error(run_cli("data", "check", str(good), env={"MEDNNS_LOG_LEVEL": "FOO"}), "FOO")
    # the export name is checked first: the dataset given does not even exist
    usage_error(run_cli("select", str(tmp_path / "nothing.npz"), "--export", "model.txt"), "model.txt", ".onnx")
    usage_error(invoke_cli("select", str(tmp_path / "nothing.npz"), "--export", "m.onnx", "--card", "m.onnx"),
                "--card")
    usage_error(invoke_cli("select", str(tmp_path / "nothing.npz"), "--k", "0"), "--k")
    usage_error(invoke_cli("select", str(tmp_path / "nothing.npz"), "--zoo-only", "--pretrained", "efficientnet_lite0"),
                "--zoo-only")


def test_zoo_show_with_a_quote_in_the_name(tmp_path):
    line = one_line(run_cli("zoo", "show", "a'b", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""}), "a'b")
    assert "mednns zoo list" in line


# ---------------------------------------------------------------------------------------------------
# the contract itself


BUG = """
    import mednns.data

    def broken(*args, **kwargs):
        raise RuntimeError("an invented bug")

    mednns.data.load_dataset = broken
"""


def test_a_bug_keeps_its_traceback_and_debug_shows_every_traceback(tmp_path, good):
    bug = run_patched(BUG, "data", "check", str(good))
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "RuntimeError: an invented bug" in bug.stderr
    missing = str(tmp_path / "nowhere.npz")
    one_line(run_cli("data", "check", missing), "nowhere.npz")
    for result in (run_cli("--debug", "data", "check", missing),
                   run_cli("data", "check", missing, env={"MEDNNS_DEBUG": "1"})):
        assert result.returncode == 1 and "Traceback" in result.stderr and "DataError" in result.stderr


def test_a_stage_script_keeps_the_same_contract(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    stage = [sys.executable, "-m", "pipelines.prepare", str(bad), str(tmp_path / "out")]
    result = subprocess.run(stage, cwd=REPO, capture_output=True, text=True, timeout=300)
    line = one_line(result, str(bad), "not an npz archive")
    assert line.startswith("error: ")
    debug = subprocess.run(stage, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "MEDNNS_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    usage = subprocess.run(stage[:3], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_expected_failures_are_explained_and_bugs_are_not():
    import errno

    import requests

    from mednns.utils.errors import DataError, explain

    assert explain(DataError("x.npz: bad\nsecond line")) == "x.npz: bad second line"
    assert explain(OSError(errno.ENOSPC, "No space left on device", "out/data.npz")).startswith(
        "out/data.npz: no space left on the device")
    assert "network error" in explain(requests.ConnectionError("refused"))
    for bug in (ValueError("v"), KeyError("k"), RuntimeError("r"), TypeError("t"), AssertionError()):
        assert explain(bug) is None


def test_the_missing_networks_folder_message_names_the_option_and_the_way_out(tmp_path, good, selection_space):
    """The default candidates include the zoo's own EfficientNet: without its folder, one line says where it
    was looked for and how to go on (fetch it, or try the ImageNet network alone)."""
    metaspace, supernets = selection_space
    line = one_line(invoke_cli("select", str(good), "--metaspace", str(metaspace), "--supernets", str(supernets),
                               "--networks", str(tmp_path / "nets")), "--networks", "nets", "dvc pull models/pretrained",
                    "--pretrained efficientnet_lite0")
    assert "Traceback" not in line
