"""The meta-space in the registry: `mednns.metaspace@champion` loads and queries like the folder itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import synthetic_arrays
from mednns.utils.errors import MedNNSError
from mednns.metaspace import MetaSpace, train_metaspace
from registry.lookup import load_model, resolve_version
from registry.models import CHAMPION, METASPACE, register_metaspace
from registry.client import Registry
from test_metaspace import FEATURES, NAMES, small_config, toy_images, toy_zoo


@pytest.fixture(scope="module")
def metaspace_dir(tmp_path_factory):
    from mednns.metaspace.features import features_of_images

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        feats = {name: features_of_images(toy_images(i), FEATURES, name) for i, name in enumerate(NAMES)}
        ms, _ = train_metaspace(toy_zoo(n_archs=8), feats, small_config(steps=20), FEATURES, progress=False)
    finally:
        torch.set_num_threads(threads)
    root = tmp_path_factory.mktemp("msproj")
    (root / "dvc.yaml").write_text("stages: {}\n")
    ms.save(root / "models" / "metaspace")
    return root


def test_metaspace_registers_once_and_loads_by_alias(metaspace_dir, mlflow_server):
    import mlflow

    root, uri = metaspace_dir, mlflow_server.uri
    first = register_metaspace(root / "models/metaspace", uri=uri, repo=root)
    assert register_metaspace(root / "models/metaspace", uri=uri, repo=root) == first  # idempotent
    v = resolve_version(f"{METASPACE}@{CHAMPION}", Registry(uri))
    assert f"{v.name}/{v.version}" == first

    images = synthetic_arrays(classes=3, channels=3, size=28, sizes={"train": 50}, seed=42)["train_images"]
    direct = MetaSpace.load(root / "models/metaspace").query(images, k=3)
    loaded = load_model(METASPACE, repo=root, uri=uri)
    pd.testing.assert_frame_equal(loaded.query(images, k=3), direct)

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNNS_REPO", str(root))
        model = mlflow.pyfunc.load_model(f"models:/{METASPACE}@{CHAMPION}")
        pd.testing.assert_frame_equal(model.predict(images, params={"k": 3}), direct)
        budget = int(np.median(direct.params))
        within = model.predict(images, params={"k": 2, "max_params": budget})
        assert len(within) <= 2 and (within.params <= budget).all()

    with pytest.raises(MedNNSError, match="meta-space not found"):
        register_metaspace(root / "nowhere", uri=uri, repo=root)
