"""BatchNorm for subnets: recalibration (a subnet sliced from a supernet inherits running statistics
averaged over every arch trained, so its own are re-estimated on a few train batches before it is
scored) and folding into the convolutions for fast eval passes."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches) -> nn.Module:
    """Reset every BatchNorm's running stats and re-estimate them as an exact average over `batches`.

    `batches` yields input tensors (or (input, label) pairs). The net is left in eval mode.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    net.train()
    for batch in batches:
        net(batch[0] if isinstance(batch, (tuple, list)) else batch)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return net.eval()


@torch.no_grad()
def fold_bn(net: nn.Module, inplace: bool = False) -> nn.Module:
    """`net` for inference with every BatchNorm folded into the convolution that feeds it.

    The same function with a third fewer kernels to run, for every eval pass (zoo scoring, head fitting,
    evaluation; the README's zoo-speed notes say what it gains). Pairs are a Conv2d followed by a BatchNorm2d in a
    Sequential, or a module's `<name>_conv` and `<name>_bn` (MBConv's layout). Eval mode only: the
    folded net has no statistics to update, so it must not be trained or recalibrated.
    """
    net = (net if inplace else copy.deepcopy(net)).eval()
    for module in list(net.modules()):
        children = dict(module.named_children())
        if isinstance(module, nn.Sequential):
            names = list(children)
            pairs = list(zip(names, names[1:]))
        else:
            pairs = [(n, n[:-len("conv")] + "bn") for n in children if n.endswith("_conv")]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
                children[bn_name] = None  # a BatchNorm folds into one conv only
    return net
