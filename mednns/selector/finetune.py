"""Adapting a zoo network to a new dataset: BatchNorm statistics and a closed-form head first, then
the whole network trained with `mednns.train.loop.train`.

Starting from a fitted head rather than a random one keeps the pretrained features from being wrecked
by the first, large gradients of a random head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from mednns.data.npz import MedDataset
from mednns.nn.bn import recalibrate_bn
from mednns.train.batches import iterate
from mednns.train.heads import fit_logistic_head, linear_head
from mednns.train.loop import TrainConfig, eval_batch, features, input_kwargs


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """`params.yaml: finetune`: the selector's recipe (the convergence baselines train the same way)."""

    # 128 left a 500-image dataset 4 optimizer steps an epoch, and every method under-trained (README).
    batch_size: int = 32
    # Per candidate the selector runs these through the net twice (train mode, then eval mode): they
    # are most of `mednns select`'s time with fine-tuning off.
    head_images: int = 500      # train images the closed-form head is fit on
    recalib_images: int = 256   # of those, the ones BatchNorm statistics are re-estimated on


def fit_head(net: nn.Module, ds: MedDataset, cfg: FinetuneConfig, device="cpu") -> nn.Module:
    """Re-estimate BatchNorm statistics on `ds`, then replace `net.classifier` with a logistic-regression
    head fit on frozen features of its train split.

    The statistics a network brings are its source dataset's; on new images its features would shift as
    soon as training mode normalises with batch statistics, and a head fit on the old ones would start
    fine-tuning with a large loss.
    """
    rng = np.random.default_rng(cfg.seed)
    n = ds.spec.splits["train"]
    idx = np.sort(rng.choice(n, min(n, cfg.head_images), replace=False))
    images = ds.images("train")[idx]
    net.to(device)
    recalibrate_bn(net, (x for x, _ in iterate(images[:cfg.recalib_images], None, eval_batch(device),
                                               **input_kwargs(net, device))))
    feats = features(net, images, device)
    # Strongly regularised, with floored feature scales: a head that starts with moderate logits
    # fine-tunes smoothly (and exports within 1e-4 of PyTorch); a sharp one saturates the softmax.
    weight, bias = fit_logistic_head(feats, ds.labels("train")[idx], ds.spec.task, ds.spec.num_classes,
                                     C=0.05, min_scale=0.1)
    net.classifier = linear_head(weight, bias).to(device)
    # Its statistics are now the new dataset's, not the zoo's recalibration.
    net.cfg = replace(net.cfg.with_head(ds.spec.task.value, ds.spec.num_classes, ds.spec.label_names),
                      recalibration={})
    return net
