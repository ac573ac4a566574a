"""The zoo's whole network (the continually pre-trained EfficientNet-Lite0) in the registry: registered once
per file, and loaded by name (library or pyfunc) from a folder that has only the tracking URI, it is the
file's network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_dataset
from mednns import predict
from mednns.nn.checkpoint import load_network, save_network
from mednns.train.continual import ContinualConfig, continual_pretrain
from mednns.utils.errors import MedNNSError
from registry.client import Registry
from registry.lookup import load_model, resolve_version
from registry.models import CURRENT, register_network

NAME = "mednns.efficientnet_lite0_zoo"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, summary = continual_pretrain([tiny_dataset(classes=3, name="aa"), tiny_dataset(classes=2, name="bb", seed=1)],
                                          ContinualConfig(image_size=32, steps=4, batch_size=8, eval_images=16))
    finally:
        torch.set_num_threads(threads)
    root = tmp_path_factory.mktemp("netproj")
    (root / "dvc.yaml").write_text("stages: {}\n")
    save_network(root / "models/pretrained/efficientnet_lite0_zoo.pt", net, summary)
    return root


def test_the_network_registers_once_and_loads_by_name_as_its_file(project, mlflow_server, tmp_path, monkeypatch):
    import mlflow

    uri, path = mlflow_server.uri, project / "models/pretrained/efficientnet_lite0_zoo.pt"
    first = register_network(path, uri=uri, repo=project)
    assert register_network(path, uri=uri, repo=project) == first  # a re-run adds no version
    v = resolve_version(f"{NAME}@{CURRENT}", Registry(uri))
    assert f"{v.name}/{v.version}" == first and v.tags["kind"] == "network"
    assert v.tags["source"] == "imagenet+aa+bb" and "ImageNet weights trained further" in v.description

    expected, _ = load_network(path)
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    want = predict(expected, images, channels=3, size=32).numpy()
    monkeypatch.chdir(tmp_path)  # elsewhere: the file comes from the registry's artifact store
    net = load_model(NAME, uri=uri)
    assert net.cfg == expected.cfg
    np.testing.assert_allclose(predict(net, images, channels=3, size=32).numpy(), want, atol=1e-5)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{CURRENT}")
    np.testing.assert_allclose(model.predict(images), want, atol=1e-5)

    with pytest.raises(MedNNSError, match="network not found"):
        register_network(project / "models/pretrained/none.pt", uri=uri, repo=project)
