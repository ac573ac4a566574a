"""Registering the selector's exported model with MLflow's ONNX flavour.

One registered model per target dataset, `mednns.selected.<dataset>` (beside the zoo's
`mednns.<dataset>.<arch_id>`), a version per distinct ONNX file: the file's sha256 is a version tag,
so re-running the same selection finds its version instead of adding a copy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mednns import sha256_file
from registry.tracking import configure, tracked_run

log = logging.getLogger(__name__)

SHA_TAG = "onnx_sha256"


def selected_model_name(dataset: str) -> str:
    return f"mednns.selected.{dataset}"


def _existing_version(client, name: str, sha: str):
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.{SHA_TAG} = '{sha}'")
    except Exception:  # the registered model does not exist yet
        return None
    return versions[0] if versions else None


def register_onnx(onnx_path: str | Path, dataset: str, example: np.ndarray, tags: dict, metrics: dict,
                  card: str | Path | None = None) -> str:
    """Log and register `onnx_path` (once per file content); returns `models:/<name>/<version>`."""
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    from mednns import onnx_predict

    configure()
    client = mlflow.MlflowClient()
    name, sha = selected_model_name(dataset), sha256_file(onnx_path)
    found = _existing_version(client, name, sha)
    if found:
        log.info("%s is already registered as %s version %s", onnx_path, name, found.version)
        describe_selection(client, name, found.version, card)
        return f"models:/{name}/{found.version}"
    str_tags = {k: str(v) for k, v in tags.items()}
    with tracked_run("selections", f"select:{dataset}:{sha[:16]}", str_tags, tags={"dataset": dataset},
                     run_name=f"select-{dataset}"):
        mlflow.log_metrics(metrics)
        if card:
            mlflow.log_artifact(str(card))
        signature = infer_signature(example, onnx_predict(onnx_path, example))
        info = mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", registered_model_name=name,
                                     signature=signature, input_example=example, metadata=_metadata(str_tags),
                                     onnx_execution_providers=["CPUExecutionProvider"],
                                     save_as_external_data=False)
    version = info.registered_model_version
    for key, value in {**str_tags, SHA_TAG: sha, **{k: f"{v:.4f}" for k, v in metrics.items()}}.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, "latest-selection", version)
    describe_selection(client, name, version, card)
    log.info("registered %s as %s version %s", onnx_path, name, version)
    return f"models:/{name}/{version}"


def register_selection(sel, ds, delivery) -> str:
    """Register what `mednns.deliver.deliver` wrote for a `Selection`, with its scores as tags."""
    from mednns import npz_layout

    metrics = {"val_acc": sel.val["acc"], "val_auc": sel.val["auc"], "test_acc": sel.test["acc"],
               "test_auc": sel.test["auc"], "onnx_test_acc": delivery.onnx_test["acc"]}
    return register_onnx(delivery.onnx.path, ds.spec.name, npz_layout(ds.images("val")[:2]), delivery.tags,
                         metrics, delivery.card)


def _metadata(tags: dict) -> dict:
    """What the MLmodel file says beside the signature: the class names of the logits' columns."""
    import json

    try:
        names = json.loads(tags.get("class_names", "[]"))
    except ValueError:
        names = []
    return {"class_names": names, "mednns_input": "uint8 images exactly as the npz stores them",
            "mednns_output": f"float32 logits (N, {len(names)}), column i = class i"}


def describe_selection(client, name: str, version, card: str | Path | None) -> None:
    """The selector's model card, whole, as the version's description and (the latest) the model's."""
    from registry.cards import selected_card

    if not card or not Path(card).is_file():
        return
    text = selected_card(Path(card).read_text(), name, version)
    if (client.get_model_version(name, str(version)).description or "") != text:
        client.update_model_version(name, str(version), description=text)
    if str(version) == str(client.get_model_version_by_alias(name, "latest-selection").version):
        client.update_registered_model(name, description=text)
