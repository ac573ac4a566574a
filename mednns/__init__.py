"""MedNNS: supernet-based medical task-adaptive neural network search."""

__version__ = "0.1.0"
