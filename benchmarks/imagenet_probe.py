"""Are the ImageNet weights of the EfficientNet-Lite0 baseline really pretrained, and at which input size
do they help? A logistic-regression probe on frozen pooled features, pretrained against the same network
from random init, at several resolutions (28 px images upsampled).

Run: `MEDNNS_DATA_DIR=../shared/medmnist python -m benchmarks.imagenet_probe [--dataset bloodmnist]`
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import print_table
from mednns.data import load_dataset
from mednns.data.subsets import seeded_subset
from mednns.nn import ModelConfig, create_model
from mednns.train.heads import fit_logistic_head
from mednns.train.loop import features
from mednns.train.metrics import evaluate_scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="bloodmnist")
    parser.add_argument("--sizes", default="32,64,96")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=1000)
    args = parser.parse_args()
    ds = load_dataset(args.dataset, download=False)
    tr = seeded_subset(ds.spec.splits["train"], args.train, np.random.default_rng(0))
    va = seeded_subset(ds.spec.splits["val"], args.val, np.random.default_rng(1))
    rows = []
    for size in map(int, args.sizes.split(",")):
        row = {"input px": size}
        for source in ("imagenet", ""):
            torch.manual_seed(0)
            net = create_model(ModelConfig("efficientnet_lite0", 3, size, ds.spec.num_classes, ds.spec.task.value,
                                           source=source)).eval()
            t0 = time.perf_counter()
            f_tr, f_va = features(net, ds.images("train")[tr]), features(net, ds.images("val")[va])
            w, b = fit_logistic_head(f_tr, ds.labels("train")[tr], ds.spec.task, ds.spec.num_classes)
            acc = evaluate_scores(ds.labels("val")[va], f_va @ w.T + b, ds.spec.task)["acc"]
            name = "ImageNet" if source else "random init"
            row[f"{name} probe acc"] = acc
            row[f"{name} zero features"] = float((f_tr == 0).mean())
            row[f"{name} s"] = time.perf_counter() - t0
        row["gain (points)"] = 100 * (row["ImageNet probe acc"] - row["random init probe acc"])
        rows.append(row)
    print_table(f"EfficientNet-Lite0 linear probe on {args.dataset} ({args.train} train / {args.val} val images)",
                rows)


if __name__ == "__main__":
    main()
