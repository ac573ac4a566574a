"""Registering the selector's ONNX file against a real `mlflow server`: through the retrying client,
once per file, whatever failed on the way."""

from __future__ import annotations

import pytest
import requests

from conftest import TINY_SPACE, tiny_dataset
from mednns.utils.errors import MedNNSError
from registry.client import Registry
from registry.selected import SHA_TAG, register_onnx, selected_model_name


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    from mednns.nn.space import SearchSpace
    from mednns.nn.supernet import Supernet
    from mednns.selector import export_onnx, npz_layout

    ds = tiny_dataset(name="regsel")
    space = SearchSpace.from_dict(TINY_SPACE)
    net = Supernet(space, 1, ds.spec.num_classes, ds.spec.image_size).extract(space.smallest()).eval()
    path = tmp_path_factory.mktemp("regsel") / "m.onnx"
    export_onnx(net, ds.spec, path, ds.images("val"))
    return path, npz_layout(ds.images("val")[:2])


def _register(onnx_file, dataset):
    path, example = onnx_file
    return register_onnx(path, dataset, example, {"arch_id": "x"}, {"val_acc": 0.5})


def _versions(uri, dataset):
    return Registry(uri).search_versions(f"name = '{selected_model_name(dataset)}'")


def test_a_lost_answer_and_a_rerun_leave_one_version(onnx_file, mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    real = MlflowClient.create_model_version
    calls = []

    def answer_lost(self, *args, **kwargs):
        # A stand-in for a network that drops the server's answer: the version is created, then the
        # client sees a connection error and (Registry.call) retries, creating a second one.
        version = real(self, *args, **kwargs)
        calls.append(version.version)
        if len(calls) == 1:
            raise requests.ConnectionError("connection reset by peer (stand-in)")
        return version

    monkeypatch.setattr(MlflowClient, "create_model_version", answer_lost)
    entry = _register(onnx_file, "lost")
    assert len(calls) == 2  # the retry did create a duplicate ...
    versions = _versions(mlflow_server.uri, "lost")
    assert len(versions) == 1 and entry == f"models:/mednns.selected.lost/{versions[0].version}"  # ... removed
    assert versions[0].tags[SHA_TAG] and versions[0].tags["val_acc"] == "0.5000"
    assert _register(onnx_file, "lost") == entry and len(_versions(mlflow_server.uri, "lost")) == 1


def test_a_failure_after_the_version_was_created_is_resumed_by_a_rerun(onnx_file, mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    real = MlflowClient.set_registered_model_alias

    def dies(self, *args, **kwargs):
        raise MedNNSError("MLflow server went away (stand-in)")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", dies)
    with pytest.raises(MedNNSError):
        _register(onnx_file, "resumed")
    assert len(_versions(mlflow_server.uri, "resumed")) == 1  # the version exists, with its sha256 tag
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", real)
    entry = _register(onnx_file, "resumed")
    versions = _versions(mlflow_server.uri, "resumed")
    assert len(versions) == 1 and entry.endswith(f"/{versions[0].version}")
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    assert client.get_model_version_by_alias(selected_model_name("resumed"), "latest-selection").version == \
        versions[0].version
