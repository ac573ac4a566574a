"""Shared fixtures: tiny synthetic datasets in MedMNIST's npz layout (tests never download)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mednns.data.npz import build_dataset
from mednns.train.supernet import SupernetConfig

SPLIT_SIZES = {"train": 40, "val": 12, "test": 12}


def synthetic_arrays(task: str = "multi-class", classes: int = 4, channels: int = 1, size: int = 28,
                     sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Images whose mean brightness depends on the label, so a model can learn them."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (sizes or SPLIT_SIZES).items():
        if task == "multi-label":
            labels = rng.integers(0, 2, size=(n, classes)).astype(np.uint8)
            level = labels.argmax(axis=1)
        else:
            labels = (np.arange(n) % classes).astype(np.uint8).reshape(-1, 1)
            level = labels[:, 0]
        base = (level * (200 // max(classes - 1, 1)) + 20).astype(np.float64)
        shape = (n, size, size) if channels == 1 else (n, size, size, channels)
        noise = rng.normal(0, 10, size=shape)
        images = np.clip(base.reshape((-1,) + (1,) * (len(shape) - 1)) + noise, 0, 255).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(autouse=True, scope="session")
def _venv_on_path():
    """Stage commands say `python` and tests call `dvc`: both must be this environment's."""
    import os
    import sys

    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(autouse=True, scope="session")
def _download_cache(tmp_path_factory):
    """Registered files downloaded from the registry go to a cache of the session, never ~/.cache."""
    import os

    os.environ["MEDNNS_CACHE"] = str(tmp_path_factory.mktemp("mednns-cache"))


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty MEDNNS_DATA_DIR for the test to fill."""
    root = tmp_path / "medmnist"
    root.mkdir()
    monkeypatch.setenv("MEDNNS_DATA_DIR", str(root))
    return root


@pytest.fixture
def make_npz(tmp_path):
    def make(name: str = "toy.npz", folder: Path | None = None, **kwargs) -> Path:
        return write_npz((folder or tmp_path) / name, synthetic_arrays(**kwargs))

    return make


REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Run the real `mednns` console command in a subprocess (what a user types)."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("mednns")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def new_project(root: Path) -> Path:
    """A fresh git + DVC checkout of this repo's pipeline at `root`.

    The code is the installed package; the copy carries what the stages list as deps.
    """
    import shutil
    import subprocess

    root.mkdir(parents=True)
    for item in ("dvc.yaml", "params.yaml", ".dvcignore", "pipelines", "mednns", "registry"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, root / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, root / item)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=root, check=True)
    return root


@pytest.fixture
def dvc_project(tmp_path, data_dir):
    return new_project(tmp_path / "project")


# A supernet small enough to train in seconds, for tests of training, zoo and everything after.
TINY_SPACE = {"stem_width": 8, "widths": [8, 16], "strides": [2, 2], "depth_choices": [1, 2],
              "kernel_choices": [3, 5], "expand_choices": [2, 3], "head_width": 16}


def tiny_dataset(task="multi-class", classes=4, channels=1, name="toy", seed=0):
    arrays = synthetic_arrays(task=task, classes=classes, channels=channels, size=16,
                              sizes={"train": 96, "val": 32, "test": 32}, seed=seed)
    return build_dataset(arrays, "synthetic", name, "synthetic")


def tiny_config(**kw):
    base = dict(epochs=3, warmup_epochs=1, batch_size=16, lr=0.05, recalib_images=64,
                eval_batch_size=64, space=TINY_SPACE)
    return SupernetConfig(**{**base, **kw})


# Real services on 127.0.0.1 for the registry and remote tests, started once per session.
@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, local artifacts) in a subprocess."""
    from servers import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), workers=2).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's server mode) on 127.0.0.1; yields its endpoint URL.

    Tests set dummy AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY themselves (monkeypatch)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: one thread is several times faster than two contending on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def selection_space(tmp_path_factory):
    """A real tiny meta-space and the supernets it ranks, for `mednns select` (built once per session):
    (metaspace folder, supernets folder). See synthetic.tiny_selection_space."""
    import torch

    import synthetic

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return synthetic.tiny_selection_space(tmp_path_factory.mktemp("selection_space"))
    finally:
        torch.set_num_threads(threads)


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def invoke_cli(*args: str, env: dict | None = None) -> CliResult:
    """The `mednns` command in this process (click's CliRunner): what `run_cli` checks, without a new
    interpreter's start-up per call. An exception that escapes the command (a bug: run_cli would
    show its traceback) is raised here, so the test fails on it."""
    from unittest import mock

    from click.testing import CliRunner

    import mednns.cli

    # The command configures logging for a terminal; here it would bind handlers to the runner's streams.
    with mock.patch.object(mednns.cli, "setup_logging", lambda level=None: None):
        result = CliRunner().invoke(mednns.cli.cli, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


_NOISE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO) |it/s\]|s/it\]|subnet/s\]")


def error_lines(stderr: str) -> list[str]:
    """stderr without the progress a command logs on the way (INFO lines, progress bars)."""
    return [line for line in stderr.splitlines() if line.strip() and not _NOISE.search(line)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """The toy project after one real `dvc repro` of every stage (tests/toy_project.py), shared by the
    end-to-end test files: (project root, data folder)."""
    from toy_project import build

    return build(tmp_path_factory.mktemp("e2e"))


@pytest.fixture
def as_a_newcomer(project, monkeypatch):
    """The environment `project` was built under, for each test that reads it: the data folder in
    MEDNNS_DATA_DIR and the embedded MLflow store (no MLFLOW_TRACKING_URI)."""
    monkeypatch.setenv("MEDNNS_DATA_DIR", str(project[1]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
