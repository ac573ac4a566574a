"""The pyfunc loader behind every MedNNS registry entry (`mlflow.pyfunc.load_model("models:/...")`).

One artifact per supernet checkpoint (or meta-space) is shared by many model versions and carries the
files themselves (registry.loader). MLflow writes `registered_model_meta` (the model name and version)
next to a model it downloads through a `models:/` URI, so the loader reads that version's tags
(arch_json, checkpoint_md5, bn_stats_md5) to know which subnet it is; loaded by run URI it gives the
supernet (or the meta-space). The files come from the artifact's own copy (checked by md5), else the
workspace or the DVC cache (an artifact registered before the files travelled with it).

Predict input, as the signature says: uint8 images (N, H, W[, 3]) as the npz stores them (converted to
the network's channels and resolution and normalised, as its `cfg` says). Output: float32 logits
(N, classes). `unwrap_python_model()` gives the torch module, which also takes float (N, C, H, W)
already normalised. The meta-space takes uint8 images (N, H, W, C) and returns its ranked candidates
as a DataFrame; params: k, max_params, max_macs, max_latency_ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class MedNNSPyfunc:
    def __init__(self, module, tags: dict):
        self.module = module
        self.tags = tags

    @property
    def python_model(self):  # what PyFuncModel.unwrap_python_model() hands out: the torch module
        return self.module

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
        if isinstance(model_input, dict) and len(model_input) == 1:  # a named tensor
            model_input = next(iter(model_input.values()))
        x = np.asarray(model_input)
        if x.dtype == np.uint8:  # as the npz stores them: fed as the network's config says, like the zoo did
            from mednns import predict

            channels, size = _input_of(self.module)
            if not hasattr(self.module, "cfg"):  # the supernet (its largest arch): no BatchNorm folding
                from mednns import to_tensor

                with torch.no_grad():
                    return self.module(to_tensor(x, channels=channels, size=size)).numpy()
            return predict(self.module, x, channels=channels, size=size, channels_last=True).numpy()
        with torch.no_grad():
            return self.module(torch.as_tensor(x, dtype=torch.float32)).numpy()


def _input_of(module) -> tuple[int, int]:
    cfg = getattr(module, "cfg", None)
    return (cfg.in_channels, cfg.image_size) if cfg is not None else (module.in_channels, module.image_size)


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

    data_path = Path(data_path)  # <model>/data/loader/ (older artifacts: <model>/data/pointer.json)
    folder = data_path if data_path.is_dir() else data_path.parent
    pointer = json.loads((folder / "pointer.json").read_text())
    copies = [folder / f for f in (pointer.pop("files", None) or {}).values()]
    tags = {**pointer, **_registered_tags(folder.parent)}
    return MedNNSPyfunc(build_from_tags(tags, copies=copies), tags)
