"""Training losses for every MedMNIST task: the task loss and in-place distillation from a teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mednns.data.spec import Task


def task_loss(logits: torch.Tensor, y: torch.Tensor, task: Task, smoothing: float) -> torch.Tensor:
    if task is Task.MULTI_LABEL:
        target = y.float() * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(logits, target)
    # Ordinal tasks train as multi-class, as MedMNIST's baselines do.
    return F.cross_entropy(logits, y[:, 0], label_smoothing=smoothing)


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor, task: Task) -> torch.Tensor:
    if task is Task.MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher))
    return torch.sum(-F.softmax(teacher, dim=1) * F.log_softmax(logits, dim=1), dim=1).mean()
