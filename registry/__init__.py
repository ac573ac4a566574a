"""MLOps adapters: MLflow tracking and model registry, the DVC / S3 remote. Imports mednns, never the reverse.

timm-style entry points (imported lazily): `registry.list_models(dataset=..., min_acc=..., max_params=...)`
-> pandas.DataFrame, `registry.load_model(name_or_id)` -> torch.nn.Module.
"""

__all__ = ["list_models", "load_model"]


def __getattr__(name):
    if name in __all__:
        from registry import lookup

        return getattr(lookup, name)
    raise AttributeError(f"module 'registry' has no attribute {name!r}")
