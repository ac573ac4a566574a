"""The closed-form linear head gives sklearn's probabilities from raw features, for every task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mednns.data.spec import Task
from mednns.train.heads import fit_logistic_head, linear_head
from mednns.train.metrics import scores_from_logits


def _data(task: Task, classes: int, n: int = 120, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, d))  # far from standardised, so the folding matters
    if task is Task.MULTI_LABEL:
        y = (x[:, :classes] + rng.normal(0, 1, size=(n, classes)) > 3).astype(np.int64)
    else:
        y = (np.digitize(x[:, 0], np.quantile(x[:, 0], np.linspace(0, 1, classes + 1)[1:-1]))).reshape(-1, 1)
    return x, y


@pytest.mark.parametrize("task,classes", [(Task.MULTI_CLASS, 4), (Task.BINARY, 2), (Task.MULTI_LABEL, 3)])
def test_head_reproduces_sklearn_probabilities(task, classes):
    x, y = _data(task, classes)
    weight, bias = fit_logistic_head(x, y, task, classes, max_iter=300)
    ours = scores_from_logits(torch.as_tensor(x @ weight.T + bias), task)
    z = StandardScaler().fit(x).transform(x)
    if task is Task.MULTI_LABEL:
        ref = np.stack([LogisticRegression(max_iter=300, C=0.5).fit(z, y[:, j]).predict_proba(z)[:, 1]
                        for j in range(classes)], axis=1)
    else:
        ref = LogisticRegression(max_iter=300, C=0.5).fit(z, y[:, 0]).predict_proba(z)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    head = linear_head(weight, bias)
    np.testing.assert_allclose(head(torch.as_tensor(x, dtype=torch.float32)).detach().numpy(),
                               x @ weight.T + bias, rtol=1e-4, atol=1e-3)


def test_classes_missing_from_the_train_subset_are_never_predicted():
    x, y = _data(Task.MULTI_CLASS, 2)
    y = y * 2  # classes 0 and 2 of 4
    weight, bias = fit_logistic_head(x, y, Task.MULTI_CLASS, 4)
    probs = scores_from_logits(torch.as_tensor(x @ weight.T + bias), Task.MULTI_CLASS)
    assert probs[:, [1, 3]].max() < 1e-5
    assert set(probs.argmax(1)) == {0, 2}
