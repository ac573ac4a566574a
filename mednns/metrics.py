"""Accuracy and AUC with MedMNIST's definitions for every task (its `getACC` / `getAUC`)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mednns.data.spec import Task


def scores_from_logits(logits: torch.Tensor | np.ndarray, task: Task) -> np.ndarray:
    """Probabilities as MedMNIST scores them: sigmoid per label for multi-label, softmax otherwise."""
    logits = torch.as_tensor(logits).float()
    probs = torch.sigmoid(logits) if task is Task.MULTI_LABEL else torch.softmax(logits, dim=1)
    return probs.numpy()


def accuracy(y_true: np.ndarray, y_score: np.ndarray, task: Task, threshold: float = 0.5) -> float:
    y_true = np.asarray(y_true)
    if task is Task.MULTI_LABEL:
        # MedMNIST averages the per-label accuracies.
        return float(((y_score > threshold) == y_true).mean())
    if task is Task.BINARY:
        return float(((y_score[:, -1] > threshold) == y_true[:, 0]).mean())
    return float((y_score.argmax(axis=1) == y_true[:, 0]).mean())


def auc(y_true: np.ndarray, y_score: np.ndarray, task: Task) -> float:
    """Mean one-vs-rest AUC; a class absent from y_true is skipped (its AUC is undefined)."""
    y_true = np.asarray(y_true)
    if task is Task.BINARY:
        return _safe_auc(y_true[:, 0], y_score[:, -1])
    columns = y_true if task is Task.MULTI_LABEL else (y_true[:, 0:1] == np.arange(y_score.shape[1]))
    values = [_safe_auc(columns[:, i], y_score[:, i]) for i in range(y_score.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _safe_auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def evaluate_scores(y_true: np.ndarray, logits: torch.Tensor | np.ndarray, task: Task) -> dict[str, float]:
    y_score = scores_from_logits(logits, task)
    return {"acc": accuracy(y_true, y_score, task), "auc": auc(y_true, y_score, task)}
