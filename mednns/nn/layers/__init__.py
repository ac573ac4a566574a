"""Elastic (weight-sharing) layers and the MBConv blocks built from them."""
from mednns.nn.layers.blocks import ElasticMBConv, MBConv
from mednns.nn.layers.elastic import ElasticBatchNorm2d, ElasticDepthwiseConv2d, ElasticPointwiseConv2d

__all__ = [
    "ElasticBatchNorm2d",
    "ElasticDepthwiseConv2d",
    "ElasticMBConv",
    "ElasticPointwiseConv2d",
    "MBConv",
]
