"""LogME: informative features score above random ones, and the subnet features it is computed on
are the zoo's own (same extraction and BatchNorm recalibration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config, tiny_dataset
from mednns.data.spec import Task
from mednns.utils.errors import MedNNSError
from mednns.metaspace.loo import SubnetFeatures, TrainSplit, logme_scores
from mednns.metaspace.logme import label_matrix, logme


pytestmark = pytest.mark.usefixtures("one_thread")


def test_logme_ranks_informative_features_above_random_ones():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(300, 1))
    y = label_matrix(labels, Task.MULTI_CLASS, 4)
    informative = np.concatenate([y * 3 + rng.normal(0, 0.5, size=y.shape), rng.normal(size=(300, 12))], axis=1)
    noisy = np.concatenate([y + rng.normal(0, 2.0, size=y.shape), rng.normal(size=(300, 12))], axis=1)
    random = rng.normal(size=(300, 16))
    scores = [logme(f, y) for f in (informative, noisy, random)]
    assert scores[0] > scores[1] > scores[2]


def test_logme_targets_for_every_task():
    np.testing.assert_array_equal(label_matrix(np.array([[1], [0]]), Task.BINARY, 2), [[0, 1], [1, 0]])
    ml = np.array([[1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(label_matrix(ml, "multi-label", 3), ml)
    rng = np.random.default_rng(1)
    f = rng.normal(size=(50, 4))
    assert np.isfinite(logme(f, label_matrix(rng.integers(0, 2, (50, 3)), Task.MULTI_LABEL, 3)))
    with pytest.raises(MedNNSError, match="LogME needs"):
        logme(f, np.zeros((49, 1)))


def test_subnet_features_are_the_zoo_scorers(tmp_path):
    from mednns.train.supernet import SupernetTrainer
    from mednns.zoo.sampling import sample_unique
    from mednns.zoo.scoring import ScoringConfig, SubnetScorer
    from mednns.nn.checkpoint import load_supernet
    from mednns.zoo.store import BNStats, SubnetStore

    source = tiny_dataset(classes=3, name="src")
    SupernetTrainer(source, tiny_config(epochs=1)).fit(tmp_path / "src.pt")
    target = tiny_dataset(task="multi-label", classes=3, channels=3, name="tgt", seed=1)
    supernet, _ = load_supernet(tmp_path / "src.pt")
    arch = sample_unique(supernet.space, 3, seed=0)[2]
    cfg = ScoringConfig(recalib_images=40, recalib_batch=16, seed=7)
    scorer = SubnetScorer(supernet, source, [], cfg)
    images = target.images("train")[:20]
    with torch.no_grad():
        net = scorer.extract(arch)
        expected = scorer._features(net, scorer._tensor(images)).numpy()
        stats = {arch.arch_id: scorer.score(arch, [])[1], supernet.space.largest().arch_id:
                 scorer.score(supernet.space.largest(), [])[1]}
    bn = BNStats("src", scorer.recalibration, stats)
    feats = SubnetFeatures(SubnetStore(tmp_path), lambda name: bn, batch=16)
    got = feats("src", arch.to_json(), images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    split = TrainSplit(target.images("train"), target.labels("train"), target.spec.task, target.spec.num_classes)
    import pandas as pd

    cands = pd.DataFrame({"source_dataset": ["src", "src"], "arch_json": [arch.to_json(), supernet.space.largest().to_json()]})
    scores = logme_scores({"tgt": cands}, lambda name: split, feats, n_images=30, seed=0, progress=False)
    assert scores["tgt"].shape == (2,) and np.isfinite(scores["tgt"]).all()
