"""MLOps adapters: MLflow tracking and model registry, the DVC / S3 remote. Imports mednns, never the reverse.

timm-style entry points (imported on first use, so a stage that only tracks runs does not depend on the
registry code): `registry.list_models(dataset=..., min_acc=..., max_params=...)` -> pandas.DataFrame,
`registry.load_model(name_or_id)` -> torch.nn.Module.
"""

import importlib

__all__ = ["list_models", "load_model"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("registry.lookup"), name)
    raise AttributeError(f"module 'registry' has no attribute {name!r}")
