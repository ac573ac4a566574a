"""The model zoo: subnets sampled from a supernet, recalibrated and scored on every dataset."""

from mednns.zoo.build import ZooConfig, build_zoo
from mednns.zoo.schema import COLUMNS, read_zoo

__all__ = ["COLUMNS", "ZooConfig", "build_zoo", "read_zoo"]
