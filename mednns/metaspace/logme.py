"""LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML
2021): the log marginal evidence of a Bayesian linear model on frozen features, maximised over its
prior precision alpha and noise precision beta by MacKay's fixed-point updates. Higher = the features
explain the labels better, so the model is expected to transfer better. numpy only.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from mednns.data.spec import Task
from mednns.utils.errors import MedNNSError


def label_matrix(labels: np.ndarray, task: Task | str, num_classes: int) -> np.ndarray:
    """(N, K) regression targets: one-hot classes, or the 0/1 label matrix of a multi-label task."""
    task = Task.parse(task) if isinstance(task, str) else task
    labels = np.asarray(labels)
    if task is Task.MULTI_LABEL:
        return labels.reshape(len(labels), -1).astype(np.float64)
    y = labels.reshape(-1).astype(int)
    return np.eye(max(num_classes, int(y.max()) + 1))[y]


def _evidence(y: np.ndarray, fy: np.ndarray, s: np.ndarray, v: np.ndarray, f: np.ndarray,
              max_iter: int = 100, tol: float = 1e-3) -> float:
    """Evidence per sample for one target column. s, v: eigen-decomposition of F^T F; fy = F^T y."""
    n, d = f.shape
    alpha, beta = 1.0, 1.0
    vfy = v.T @ fy
    for _ in range(max_iter):
        gamma = float((beta * s / (alpha + beta * s)).sum())
        m = v @ (beta * vfy / (alpha + beta * s))          # posterior mean of the weights
        mm = float(m @ m)
        res = float(((y - f @ m) ** 2).sum())
        new_alpha = gamma / max(mm, 1e-12)
        new_beta = (n - gamma) / max(res, 1e-12)
        done = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m = v @ (beta * vfy / (alpha + beta * s))
    mm, res = float(m @ m), float(((y - f @ m) ** 2).sum())
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * s).sum()
                - beta / 2 * res - alpha / 2 * mm - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)


def logme(features: np.ndarray, targets: np.ndarray) -> float:
    """Mean LogME over the target columns. features (N, D), targets (N, K) (see `label_matrix`)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise MedNNSError(f"LogME needs features (N, D) and targets (N, K) with N >= 2, got {f.shape} and {y.shape}")
    if not np.isfinite(f).all():
        raise MedNNSError("LogME: features contain NaN or inf")
    with threadpool_limits(1):  # small matrices: BLAS threads cost more than they save
        s, v = np.linalg.eigh(f.T @ f)
        s = np.clip(s, 0.0, None)
        return float(np.mean([_evidence(y[:, k], f.T @ y[:, k], s, v, f) for k in range(y.shape[1])]))
