"""Registering the selector's exported model with MLflow's ONNX flavour.

One registered model per target dataset, `mednns.selected.<dataset>` (beside the zoo's
`mednns.<dataset>.<arch_id>`), a version per distinct ONNX file: the file's sha256 is a version tag,
set when the version is created, so re-running the same selection finds its version instead of adding
a copy. Every registry call goes through the retrying client (`Registry.call`); a create that was
retried after the server committed it but failed to answer, or two registrations at once, leave
duplicates of one sha256 that are removed right after (the lowest version stays).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mednns import MedNNSError, sha256_file
from registry.client import ALREADY_EXISTS, NOT_FOUND, Registry, literal
from registry.tracking import configure, tracked_run

log = logging.getLogger(__name__)

SHA_TAG = "onnx_sha256"
ALIAS = "latest-selection"


def selected_model_name(dataset: str) -> str:
    return f"mednns.selected.{dataset}"


def _versions(reg: Registry, name: str, sha: str) -> list:
    return reg.search_versions(f"name = {literal(name, 'model name')} AND tags.{SHA_TAG} = {literal(sha)}")


def _single(reg: Registry, name: str, found: list):
    """The lowest version of `found`; the others (duplicates of one file) are deleted."""
    found = sorted(found, key=lambda v: int(v.version))
    for extra in found[1:]:
        log.info("%s: removing duplicate version %s of version %s", name, extra.version, found[0].version)
        reg.call(reg.client.delete_model_version, name, extra.version, ok=(NOT_FOUND,))
    return found[0]


def register_onnx(onnx_path: str | Path, dataset: str, example: np.ndarray, tags: dict, metrics: dict,
                  card: str | Path | None = None) -> str:
    """Log and register `onnx_path` (once per file content); returns `models:/<name>/<version>`."""
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    from mednns import onnx_predict

    configure()
    reg = Registry()
    name, sha = selected_model_name(dataset), sha256_file(onnx_path)
    found = _versions(reg, name, sha)
    if found:
        log.info("%s is already registered as %s", onnx_path, name)
    else:
        str_tags = {k: str(v) for k, v in tags.items()}
        with tracked_run("selections", f"select:{dataset}:{sha[:16]}", str_tags, tags={"dataset": dataset},
                         run_name=f"select-{dataset}") as run:
            mlflow.log_metrics(metrics)
            if card:
                mlflow.log_artifact(str(card))
            signature = infer_signature(example, onnx_predict(onnx_path, example))
            info = mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", signature=signature,
                                         input_example=example, metadata=_metadata(str_tags),
                                         onnx_execution_providers=["CPUExecutionProvider"],
                                         save_as_external_data=False)
        # The sha256 tag is set with the version, in one call: no version exists without it.
        version_tags = {**str_tags, SHA_TAG: sha, **{k: f"{v:.4f}" for k, v in metrics.items()}}
        reg.call(reg.client.create_registered_model, name, ok=(ALREADY_EXISTS,))
        reg.call(reg.client.create_model_version, name, info.model_uri, run_id=run.info.run_id, tags=version_tags,
                 model_id=info.model_id, await_creation_for=0)
        found = _versions(reg, name, sha)
        if not found:
            raise MedNNSError(f"{reg.uri}: the new version of {name} is not found right after its creation; "
                              "re-run the command")
    version = _single(reg, name, found).version
    reg.call(reg.client.set_registered_model_alias, name, ALIAS, version)
    describe_selection(reg, name, version, card)
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


def describe_selection(reg: Registry, name: str, version, card: str | Path | None) -> None:
    """The selector's model card, whole, as the version's description and (the latest) the model's."""
    from registry.cards import selected_card

    if not card or not Path(card).is_file():
        return
    text = selected_card(Path(card).read_text(), name, version)
    client = reg.client
    if (reg.call(client.get_model_version, name, str(version)).description or "") != text:
        reg.call(client.update_model_version, name, str(version), description=text)
    if str(version) == str(reg.call(client.get_model_version_by_alias, name, ALIAS).version):
        reg.call(client.update_registered_model, name, description=text)
