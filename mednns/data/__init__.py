"""The data layer: MedMNIST and user npz datasets, validated, as specs and tensors."""

from mednns.data.catalog import MEDMNIST_2D, SIZES, resolve
from mednns.data.loader import load_dataset
from mednns.data.npz import MedDataset
from mednns.data.prepared import PrepareConfig, load_prepared, prepare
from mednns.data.spec import SPLITS, DatasetSpec, Task


def __getattr__(name):
    # torch only when tensors are wanted: `mednns data check` and friends start in a fraction of the time.
    if name == "to_tensor":
        from mednns.data.tensors import to_tensor

        return to_tensor
    raise AttributeError(f"module 'mednns.data' has no attribute {name!r}")

__all__ = [
    "MEDMNIST_2D", "SIZES", "SPLITS", "DatasetSpec", "MedDataset", "PrepareConfig", "Task", "load_dataset",
    "load_prepared", "prepare", "resolve", "to_tensor",
]
