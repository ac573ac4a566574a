"""MedNNS: supernet-based medical task-adaptive neural network search.

The public API, as `timm/__init__.py` has it: load a dataset, describe an architecture, get a zoo
subnet, query the meta-space, select a model for a new dataset, export it.

    import mednns
    ds = mednns.load_dataset("bloodmnist")                      # or a path to your own npz
    store = mednns.SubnetStore("models/supernets")
    net = store.subnet("bloodmnist", arch_json, mednns.BNStats.load("zoo/bloodmnist.bn.pt"))
    ms = mednns.MetaSpace.load("models/metaspace")
    sel = mednns.select(ds, ms, store, k=5)

Names are imported on first use (PEP 562), so `import mednns` stays cheap and a DVC stage depends
only on the modules it really imports.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # errors and files
    "MedNNSError": "mednns.utils.errors", "DataError": "mednns.utils.errors",
    "atomic_path": "mednns.utils.io", "sha256_file": "mednns.utils.io", "write_json": "mednns.utils.io",
    "from_section": "mednns.utils.config",
    # data
    "DatasetSpec": "mednns.data", "MedDataset": "mednns.data", "Task": "mednns.data",
    "load_dataset": "mednns.data", "load_prepared": "mednns.data", "prepare": "mednns.data",
    "to_tensor": "mednns.data",
    # networks
    "Arch": "mednns.nn", "SearchSpace": "mednns.nn", "Supernet": "mednns.nn", "StaticNet": "mednns.nn",
    "ModelConfig": "mednns.nn", "create_model": "mednns.nn", "load_supernet": "mednns.nn",
    "read_checkpoint": "mednns.nn", "subnet_config": "mednns.nn", "load_network": "mednns.nn",
    # inference and scores
    "predict": "mednns.train.batches", "evaluate_scores": "mednns.train.metrics",
    # the zoo
    "SubnetStore": "mednns.zoo", "BNStats": "mednns.zoo", "Recalibration": "mednns.zoo",
    "bn_stats_path": "mednns.zoo", "read_zoo": "mednns.zoo", "ZooConfig": "mednns.zoo",
    # the meta-space
    "MetaSpace": "mednns.metaspace",
    # selection and export
    "select": "mednns.selector", "Selection": "mednns.selector", "FinetuneConfig": "mednns.selector",
    "export_onnx": "mednns.selector", "onnx_predict": "mednns.selector", "npz_layout": "mednns.selector",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mednns' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
