"""MLflow tracking: the embedded local store by default, any server through MLFLOW_TRACKING_URI.

A run is identified by a `mednns.run_key` tag (stage, dataset, settings), so a stage that was
interrupted continues its own run when re-run instead of leaving a second, half-finished one.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mednns import MedNNSError

log = logging.getLogger(__name__)

RUN_KEY_TAG = "mednns.run_key"
# Fail fast on a dead server instead of MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


# What may stand inside a quoted value of an MLflow filter string: MLflow's parser has no escape for a
# quote, so a value is checked instead of escaped. Every name and key MedNNS registers fits.
_LITERAL_OK = re.compile(r"^[A-Za-z0-9_.:@/+%\-]*$")


def literal(value, what: str = "value") -> str:
    """`value` as a quoted literal for an MLflow filter string; MedNNSError when it cannot be one."""
    text = str(value)
    if not _LITERAL_OK.match(text):
        raise MedNNSError(f"{what} {text!r}: registry names and tags hold only letters, digits and . _ - : @ / +; "
                          "see `mednns zoo list` for the registered names")
    return f"'{text}'"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store `mlflow.db` in the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def check_reachable(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as e:
        raise MedNNSError(f"MLflow server {uri} is unreachable ({type(e).__name__}); start it, or unset "
                          "MLFLOW_TRACKING_URI to use the local store mlflow.db") from None


def configure() -> str:
    import mlflow

    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    # One store for runs and models: an inherited MLFLOW_REGISTRY_URI must not send models elsewhere.
    mlflow.set_registry_uri(uri)
    return uri


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


@contextmanager
def tracked_run(experiment: str, run_key: str, params: dict, tags: dict | None = None,
                run_name: str | None = None) -> Iterator["mlflow.ActiveRun"]:  # noqa: F821
    """Start (or continue, if an earlier attempt did not finish) the run identified by `run_key`."""
    import mlflow

    configure()
    exp = mlflow.set_experiment(experiment)
    previous = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = {literal(run_key, 'run key')}",
                                  output_format="list", order_by=["attributes.start_time DESC"])
    unfinished = [r for r in previous if r.info.status != "FINISHED"]
    run_id = unfinished[0].info.run_id if unfinished else None
    if run_id:
        log.info("continuing MLflow run %s (%s)", run_id, run_key)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name,
                          tags={RUN_KEY_TAG: run_key, **(tags or {})}) as run:
        if not run_id:
            mlflow.log_params(flatten(params))
        yield run


def run_key(stage: str, *parts: str, settings=None, files=()) -> str:
    """`stage:part:...:<hash>`: the settings and the input files' contents, so that re-running the same
    work continues its run and anything else gets a run of its own."""
    import hashlib
    import json

    from mednns import sha256_file

    digest = json.dumps({"settings": settings, "files": {str(f): sha256_file(f) for f in files}},
                        sort_keys=True, default=str)
    return ":".join((stage, *parts, hashlib.sha1(digest.encode()).hexdigest()[:12]))


def log_curves(run_id: str, history, step: str = "step", prefix: str = "") -> None:
    """Every column of a per-step table (a DataFrame) as MLflow metrics, 1000 points per request."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(f"{prefix}{k}", float(v), now, int(getattr(r, step)))
              for r in history.itertuples(index=False) for k, v in r._asdict().items() if k != step]
    client = mlflow.tracking.MlflowClient()
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i:i + 1000])
