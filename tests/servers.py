"""A local `mlflow server` (SQLite backend, artifacts served over HTTP) in a subprocess: for tests and
benchmarks. Clients reach its artifacts only through the server (`mlflow-artifacts:/` URIs), as a
colleague on another machine would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class ServerError(RuntimeError):
    """The test server could not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, url: str, what: str, log: Path, timeout: float) -> None:
    """Poll `url` until it answers 200; ServerError when `proc` exits first or `timeout` passes."""
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise ServerError(f"{what} did not answer on {url} within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen | None, kill: bool = False) -> None:
    """Stop `proc` and its children (it leads a session): SIGTERM (SIGKILL with kill=True), SIGKILL after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with its store in `root` (mlflow.db + artifacts/, served by it)."""

    def __init__(self, root: str | Path, port: int | None = None, workers: int = 2):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "MlflowServer":
        exe = Path(sys.executable).with_name("mlflow")
        cmd = [str(exe), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--serve-artifacts",
               "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", str(self.workers)]
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     # No job runner (huey consumers): the registry never uses server-side
                                     # jobs, and on 2 cores those processes cost more than the server.
                                     env={**os.environ, "MLFLOW_TRACKING_URI": "",
                                          "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        try:
            wait_until_up(self.proc, self.uri + "/health", "mlflow server", self.root / "server.log", timeout)
        except ServerError:
            self.stop()
            raise
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the server and its workers (SIGKILL with kill=True: as if the machine died)."""
        stop_group(self.proc, kill)
        self.proc = None

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ModelServer:
    """`mlflow models serve -m <uri> --env-manager local` on 127.0.0.1: a registered model behind HTTP.

    It loads the model from the registry at `tracking_uri` (runs and models alike)."""

    def __init__(self, model_uri: str, tracking_uri: str, cwd: str | Path, port: int | None = None):
        self.model_uri, self.cwd = model_uri, Path(cwd)
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.cwd / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ModelServer":
        exe = Path(sys.executable).with_name("mlflow")
        cmd = [str(exe), "models", "serve", "-m", self.model_uri, "--env-manager", "local", "-h", "127.0.0.1",
               "-p", str(self.port), "-w", "1"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def wait(self, timeout: float = 180) -> "ModelServer":
        try:
            wait_until_up(self.proc, self.url + "/ping", "mlflow models serve", self.log, timeout)
        except ServerError:
            self.stop()
            raise
        return self

    def predict(self, images) -> "np.ndarray":  # noqa: F821
        """POST uint8 images to /invocations as JSON, as any HTTP client would."""
        import numpy as np
        import requests

        res = requests.post(self.url + "/invocations", json={"inputs": np.asarray(images).tolist()}, timeout=60)
        if not res.ok:
            raise ServerError(f"{res.status_code}: {res.text[:500]}")
        out = res.json()["predictions"]
        if isinstance(out, dict):  # a model with named outputs (ONNX): {name: values}
            (out,) = out.values()
        return np.asarray(out, dtype=np.float32)

    def stop(self) -> None:
        stop_group(self.proc)
