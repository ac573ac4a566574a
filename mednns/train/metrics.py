"""Accuracy and AUC with MedMNIST's definitions for every task (its `getACC` / `getAUC`)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from mednns.data.spec import Task


def scores_from_logits(logits: torch.Tensor | np.ndarray, task: Task) -> np.ndarray:
    """Probabilities as MedMNIST scores them: sigmoid per label for multi-label, softmax otherwise."""
    logits = torch.as_tensor(logits).detach().float().cpu()
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
        columns, y_score = y_true[:, :1].astype(bool), y_score[:, -1:]
    elif task is Task.MULTI_LABEL:
        columns = y_true.astype(bool)
    else:
        columns = y_true[:, 0:1] == np.arange(y_score.shape[1])
    values = column_auc(columns, y_score)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def column_auc(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of every column of `score` against the boolean column of `positive` (NaN where a column
    has one class only), as the Mann-Whitney statistic of average ranks: equal to sklearn's
    `roc_auc_score`, ties included, and much faster; the zoo computes thousands of them."""
    ranks = rankdata(score, axis=0)
    n_pos = positive.sum(0)
    n_neg = len(positive) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((ranks * positive).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def log_loss(y_true: np.ndarray, logits: torch.Tensor | np.ndarray, task: Task) -> float:
    """Mean cross-entropy of the labels under the probabilities `scores_from_logits` gives (binary cross-entropy
    per label for multi-label): a proper scoring rule, so it rewards confident right answers and punishes
    confident wrong ones, where accuracy on a small split moves in steps of one image."""
    logits = torch.as_tensor(logits).detach().float().cpu()
    y_true = torch.as_tensor(np.asarray(y_true))
    if task is Task.MULTI_LABEL:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y_true.float()))
    return float(torch.nn.functional.cross_entropy(logits, y_true[:, 0].long()))


def evaluate_scores(y_true: np.ndarray, logits: torch.Tensor | np.ndarray, task: Task) -> dict[str, float]:
    y_score = scores_from_logits(logits, task)
    return {"acc": accuracy(y_true, y_score, task), "auc": auc(y_true, y_score, task)}
