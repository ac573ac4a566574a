"""Networks: the search space, the weight-sharing supernet and its static subnets, their layers,
BatchNorm handling, checkpoints, the from-scratch baselines, and the config every network carries."""

from mednns.nn.checkpoint import load_network, load_supernet, read_checkpoint, save_network, save_supernet, subnet_config
from mednns.nn.config import ModelConfig
from mednns.nn.factory import create_model
from mednns.nn.space import Arch, SearchSpace
from mednns.nn.supernet import StaticNet, Supernet

__all__ = ["Arch", "ModelConfig", "SearchSpace", "StaticNet", "Supernet", "create_model", "load_network", "load_supernet",
           "read_checkpoint", "save_network", "save_supernet", "subnet_config"]
