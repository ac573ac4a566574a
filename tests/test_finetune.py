"""Training a static network on a new dataset: the head fit and the fine-tuning loop both learn."""

from __future__ import annotations

import torch

from conftest import tiny_dataset
from mednns.baselines import ResNet18
from mednns.finetune import FinetuneConfig, InputFormat, evaluate, fit_head, train


def test_training_from_scratch_learns_and_reports_every_epoch():
    ds = tiny_dataset(classes=4, channels=1)
    torch.manual_seed(0)
    net = ResNet18(1, 4, widths=(8, 16, 16, 16))
    fmt = InputFormat(1, 16, channels_last=False)
    before = evaluate(net, ds, "val", fmt)["acc"]
    history = train(net, ds, fmt, FinetuneConfig(epochs=4, batch_size=16, lr=2e-2))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > max(before, 0.5)  # 4 classes: chance is 0.25


def test_head_fit_on_frozen_features_beats_a_random_head_on_any_channel_count():
    ds = tiny_dataset(classes=4, channels=3)  # an RGB dataset into a greyscale network
    torch.manual_seed(0)
    net = ResNet18(1, 4, widths=(8, 8, 8, 8)).eval()
    fmt = InputFormat(1, 16, channels_last=False)
    random_head = evaluate(net, ds, "val", fmt)["acc"]
    fit_head(net, ds, fmt, FinetuneConfig(head_images=96))
    assert evaluate(net, ds, "val", fmt)["acc"] > max(random_head, 0.6)
