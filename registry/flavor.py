"""The pyfunc loader behind every MedNNS registry entry (`mlflow.pyfunc.load_model("models:/...")`).

One artifact per supernet checkpoint (or meta-space) is shared by many model versions. MLflow writes
`registered_model_meta` (the model name and version) next to a model it downloads through a
`models:/` URI, so the loader reads that version's tags (arch_json, checkpoint, checkpoint_md5) to
know which subnet it is; loaded by run URI it gives the supernet (or the meta-space).

Predict input: images as a numpy array, either float (N, C, H, W) already normalised, or uint8
(N, H, W[, C]) MedMNIST layout (converted to the network's channels and resolution and normalised, as its `cfg` says). Output: logits (N, classes) as numpy.
The meta-space takes uint8 images (or an npz path, or a DataFrame with a `path` column) and returns
its ranked candidates as a DataFrame; params: k, max_params, max_macs, max_latency_ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class MedNNSPyfunc:
    def __init__(self, module, tags: dict):
        self.module = module
        self.tags = tags

    def unwrap_python_model(self):
        return self.module

    def predict(self, model_input, params=None):
        import pandas as pd
        import torch

        if self.tags.get("kind") == "metaspace":
            params = params or {}
            constraints = {c: params[c] for c in ("max_params", "max_macs", "max_latency_ms")
                           if params.get(c) is not None}
            if isinstance(model_input, pd.DataFrame) and "path" in model_input.columns:
                model_input = str(model_input["path"].iloc[0])
            return self.module.query(model_input, k=int(params.get("k") or 5), constraints=constraints or None)
        if isinstance(model_input, pd.DataFrame):
            model_input = model_input.to_numpy()
        x = np.asarray(model_input)
        if x.dtype == np.uint8:  # as the npz stores them: fed as the network's config says, like the zoo did
            from mednns import predict

            cfg = self.module.cfg
            return predict(self.module, x, channels=cfg.in_channels, size=cfg.image_size,
                           channels_last=True).numpy()
        with torch.no_grad():
            return self.module(torch.as_tensor(x, dtype=torch.float32)).numpy()


def _registered_tags(model_dir: Path) -> dict:
    meta = next((d / "registered_model_meta" for d in (model_dir, *model_dir.parents[:2])
                 if (d / "registered_model_meta").is_file()), None)
    if meta is None:
        return {}
    import mlflow
    import yaml

    info = yaml.safe_load(meta.read_text()) or {}
    name, version = info.get("model_name"), info.get("model_version")
    if not name or version is None:
        return {}
    from registry.client import Registry

    reg = Registry(mlflow.get_registry_uri())
    return dict(reg.call(reg.client.get_model_version, name, str(version)).tags)


def _load_pyfunc(data_path: str, model_config=None):
    from registry.lookup import build_from_tags

    data_path = Path(data_path)
    pointer = json.loads(data_path.read_text())
    tags = {**pointer, **_registered_tags(data_path.parent)}  # data_path: <model>/data/pointer.json
    return MedNNSPyfunc(build_from_tags(tags), tags)
