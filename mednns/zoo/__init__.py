"""The model zoo: subnets sampled from a supernet, recalibrated and scored on every dataset, and the one
store every later user of a zoo subnet gets it from."""

from mednns.zoo.build import ZooConfig, build_zoo
from mednns.zoo.schema import COLUMNS, read_zoo
from mednns.zoo.store import BNStats, Recalibration, SubnetStore, bn_stats_path

__all__ = ["BNStats", "COLUMNS", "Recalibration", "SubnetStore", "ZooConfig", "bn_stats_path", "build_zoo",
           "read_zoo"]
