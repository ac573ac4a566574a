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
        import requests

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
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"mlflow server exited ({self.proc.returncode}); see {self.root / 'server.log'}")
            try:
                if requests.get(self.uri + "/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise ServerError(f"mlflow server did not answer on {self.uri} within {timeout:.0f} s")

    def stop(self, kill: bool = False) -> None:
        """Stop the server and its workers (SIGKILL with kill=True: as if the machine died)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
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
        import requests

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"mlflow models serve exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/ping", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"mlflow models serve did not answer on {self.url} within {timeout:.0f} s")

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
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
