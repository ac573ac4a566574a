"""Scores follow MedMNIST's definitions; expected values are worked out by hand."""

import numpy as np
import pytest
import torch

from mednns.data import Task
from mednns.train.metrics import accuracy, auc, evaluate_scores, log_loss


def test_binary_uses_the_positive_column_and_a_half_threshold():
    y = np.array([[0], [1], [1], [0]])
    score = np.array([[.8, .2], [.2, .8], [.6, .4], [.4, .6]])
    assert accuracy(y, score, Task.BINARY) == 0.5
    # positives score .8 and .4, negatives .2 and .6: 3 of 4 pairs ordered right
    assert auc(y, score, Task.BINARY) == pytest.approx(0.75)


def test_multi_class_accuracy_is_argmax_and_auc_is_mean_one_vs_rest():
    y = np.array([[0], [1], [2], [2]])
    score = np.array([[.7, .2, .1], [.1, .8, .1], [.5, .1, .4], [.1, .2, .7]])
    assert accuracy(y, score, Task.MULTI_CLASS) == 0.75
    # class 0: pos .7 vs neg .1 .5 .1 -> 1; class 1: pos .8 vs .2 .1 .2 -> 1;
    # class 2: pos .4 .7 vs neg .1 .1 -> 1
    assert auc(y, score, Task.MULTI_CLASS) == pytest.approx(1.0)


def test_multi_label_accuracy_averages_labels():
    y = np.array([[1, 0], [0, 1]])
    score = np.array([[.9, .6], [.2, .7]])
    assert accuracy(y, score, Task.MULTI_LABEL) == 0.75
    assert auc(y, score, Task.MULTI_LABEL) == pytest.approx(1.0)


def test_auc_skips_a_class_absent_from_the_labels():
    y = np.array([[0], [0], [1], [1]])
    score = np.array([[.6, .3, .1], [.2, .7, .1], [.1, .8, .1], [.5, .4, .1]])
    # class 2 never occurs; class 0: pos .6 .2 vs neg .1 .5 -> 3/4; class 1: pos .8 .4 vs .3 .7 -> 3/4
    assert auc(y, score, Task.MULTI_CLASS) == pytest.approx(0.75)


def test_auc_equals_sklearn_with_ties_and_absent_classes():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(200, 1))
    y[y == 3] = 2  # class 3 absent
    score = np.round(rng.random((200, 4)), 1)  # coarse scores: many ties
    expected = np.mean([roc_auc_score(y[:, 0] == c, score[:, c]) for c in range(3)])
    assert auc(y, score, Task.MULTI_CLASS) == pytest.approx(expected, abs=1e-12)
    labels = rng.integers(0, 2, size=(200, 3))
    expected = np.mean([roc_auc_score(labels[:, c], score[:, c]) for c in range(3)])
    assert auc(labels, score[:, :3], Task.MULTI_LABEL) == pytest.approx(expected, abs=1e-12)
    assert auc(y.clip(0, 1), score[:, :2], Task.BINARY) == pytest.approx(
        roc_auc_score(y.clip(0, 1)[:, 0], score[:, 1]), abs=1e-12)


def test_log_loss_is_the_mean_negative_log_probability_of_the_true_label():
    # softmax of (log .8, log .2) is (.8, .2): the true labels get .8 and .2
    logits = np.log(np.array([[.8, .2], [.8, .2]]))
    y = np.array([[0], [1]])
    assert log_loss(y, logits, Task.BINARY) == pytest.approx(-(np.log(.8) + np.log(.2)) / 2)
    assert log_loss(y, logits, Task.MULTI_CLASS) == pytest.approx(-(np.log(.8) + np.log(.2)) / 2)
    # sigmoid(0) = .5 for every label; sigmoid(log 3) = .75
    labels = np.array([[1, 0], [0, 1]])
    ml = np.array([[np.log(3), 0.], [0., np.log(3)]])
    assert log_loss(labels, ml, Task.MULTI_LABEL) == pytest.approx(-(np.log(.75) + np.log(.5)) / 2)


def test_log_loss_ranks_a_majority_guesser_below_an_informative_model_of_equal_accuracy():
    """What the selector relies on: on accuracy a head that always answers the majority class ties one that
    separates the classes; on log loss it does not."""
    y = np.array([[1]] * 7 + [[0]] * 3)
    majority = np.log([[.2, .8]] * 10)
    # positives: 5 right at .6, 2 wrong at .45; negatives: 2 right at .9, 1 wrong at .45
    informative = np.log([[.4, .6]] * 5 + [[.55, .45]] * 2 + [[.9, .1]] * 2 + [[.45, .55]])
    assert accuracy(y, np.exp(informative), Task.BINARY) == accuracy(y, np.exp(majority), Task.BINARY) == 0.7
    assert log_loss(y, majority, Task.BINARY) == pytest.approx(-(7 * np.log(.8) + 3 * np.log(.2)) / 10)
    assert log_loss(y, informative, Task.BINARY) == pytest.approx(
        -(5 * np.log(.6) + 3 * np.log(.45) + 2 * np.log(.9)) / 10)
    assert log_loss(y, informative, Task.BINARY) < log_loss(y, majority, Task.BINARY)


def test_scores_take_logits_straight_from_a_network():
    # A classifier's output still carries its graph (and lives on the GPU there); scoring must not
    # need the caller to detach and copy it first.
    y = np.array([[0], [1], [1]])
    logits = torch.tensor([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.0]], requires_grad=True)
    assert evaluate_scores(y, logits, Task.MULTI_CLASS)["acc"] == pytest.approx(2 / 3)
    assert log_loss(y, logits, Task.MULTI_CLASS) > 0
