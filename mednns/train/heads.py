"""Linear heads fit in closed form on frozen features: the zoo's transfer probe and the selector's
starting head for a new dataset are the same logistic regression."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from mednns.data.spec import Task

# A label seen with one value only in the train subset is predicted with this logit (p ~ 1 - 1e-6).
_CERTAIN = 14.0


def fit_logistic_head(feats: np.ndarray, labels: np.ndarray, task: Task, num_classes: int,
                      C: float = 0.5, max_iter: int = 100, min_scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on standardised features, folded back into raw features.

    Returns (weight [num_classes, D], bias [num_classes]) such that `feats @ weight.T + bias` are logits
    in the task's convention: softmax over classes (binary: class 0 has logit 0, so the softmax is the
    sigmoid sklearn fits), or a sigmoid per label for multi-label.
    `min_scale` > 0 floors the standard deviations used to standardise (see below).
    """
    scaler = StandardScaler().fit(feats)
    # A feature that barely varies on the train subset would get a weight of 1/its tiny std: flooring
    # the std (at `min_scale` x the median one) keeps such a head's logits moderate on new images.
    scaler.scale_ = np.maximum(scaler.scale_, min_scale * np.median(scaler.scale_))
    x = scaler.transform(feats)
    weight = np.zeros((num_classes, feats.shape[1]))
    bias = np.full(num_classes, -_CERTAIN if task is not Task.MULTI_LABEL else 0.0)
    columns = range(num_classes) if task is Task.MULTI_LABEL else [None]
    for col in columns:
        y = labels[:, 0] if col is None else labels[:, col]
        classes = np.unique(y)
        if len(classes) < 2:  # one value only in the subset: predict it with certainty
            if col is None:
                bias[int(classes[0])] = _CERTAIN
            else:
                bias[col] = _CERTAIN if classes[0] else -_CERTAIN
            continue
        # One BLAS thread: right after a forward pass torch's OpenMP workers still spin on the other
        # core, and a multi-threaded BLAS fighting them made each fit many times slower in the zoo.
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            # Features of a few hundred images are often separable: lbfgs stops at max_iter, which
            # regularises like early stopping and bounds the zoo's per-subnet cost.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(max_iter=max_iter, C=C).fit(x, y)
        if col is not None:
            weight[col], bias[col] = clf.coef_[0], clf.intercept_[0]
        elif len(classes) == 2 and task is Task.BINARY:
            weight[1], bias[0], bias[1] = clf.coef_[0], 0.0, clf.intercept_[0]
        else:
            rows = clf.classes_.astype(int)
            coef = clf.coef_ if len(rows) > 2 else np.stack([-clf.coef_[0], clf.coef_[0]]) / 2
            intercept = clf.intercept_ if len(rows) > 2 else np.array([-1, 1]) * clf.intercept_[0] / 2
            weight[rows], bias[rows] = coef, intercept
    # Undo the standardisation: w.(x - m)/s + b == (w/s).x + (b - w.m/s).
    weight = weight / scaler.scale_
    bias = bias - weight @ scaler.mean_
    return weight.astype(np.float32), bias.astype(np.float32)


def linear_head(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight))
        head.bias.copy_(torch.as_tensor(bias))
    return head
