"""The data layer: MedMNIST and user npz datasets, validated, as specs and tensors."""

from mednns.data.catalog import MEDMNIST_2D, SIZES, resolve
from mednns.data.loader import load_dataset
from mednns.data.npz import MedDataset
from mednns.data.prepared import PrepareConfig, load_prepared, prepare
from mednns.data.spec import SPLITS, DatasetSpec, Task
from mednns.data.tensors import to_tensor

__all__ = [
    "MEDMNIST_2D", "SIZES", "SPLITS", "DatasetSpec", "MedDataset", "PrepareConfig", "Task", "load_dataset",
    "load_prepared", "prepare", "resolve", "to_tensor",
]
