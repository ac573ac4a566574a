"""Training a static network on a new dataset: the head fit and the fine-tuning loop both learn."""

from __future__ import annotations

import torch

from conftest import tiny_dataset
from mednns.nn.baselines import ResNet18
from mednns.nn.config import ModelConfig
from mednns.selector.finetune import FinetuneConfig, fit_head
from mednns.train.loop import score_split, train


def _resnet(in_channels: int, widths) -> ResNet18:
    return ResNet18(ModelConfig("resnet18", in_channels, 16, 4, "multi-class"), widths=widths)


def test_training_from_scratch_learns_and_reports_every_epoch():
    ds = tiny_dataset(classes=4, channels=1)
    torch.manual_seed(0)
    net = _resnet(1, (8, 16, 16, 16))
    before = score_split(net, ds, "val")["acc"]
    history = train(net, ds, FinetuneConfig(epochs=4, batch_size=16, lr=2e-2))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > max(before, 0.5)  # 4 classes: chance is 0.25


def test_head_fit_on_frozen_features_beats_a_random_head_on_any_channel_count():
    ds = tiny_dataset(classes=4, channels=3)  # an RGB dataset into a greyscale network
    torch.manual_seed(0)
    net = _resnet(1, (8, 8, 8, 8)).eval()
    random_head = score_split(net, ds, "val")["acc"]
    fit_head(net, ds, FinetuneConfig(head_images=96))
    assert score_split(net, ds, "val")["acc"] > max(random_head, 0.6)
    assert net.cfg.num_classes == 4 and net.cfg.class_names == ds.spec.label_names
