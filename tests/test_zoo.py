"""The zoo: distinct archs, recalibrated scores, the documented schema, and resumable builds."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SPACE, tiny_config, tiny_dataset
from mednns.train.batches import predict
from mednns.nn.bn import fold_bn, recalibrate_bn
from mednns.data.tensors import to_tensor
from mednns.train.metrics import evaluate_scores
from mednns.nn.space import Arch, SearchSpace
from mednns.train.supernet import SupernetTrainer
from mednns.zoo import COLUMNS, ZooConfig, build_zoo, read_zoo
from mednns.zoo.sampling import sample_unique
from mednns.zoo.scoring import SubnetScorer
from mednns.zoo.store import BNStats, Recalibration, SubnetStore, bn_state, bn_stats_path

SPACE = SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_SPACE.items()})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny supernet trained on a synthetic source dataset, plus a second dataset as transfer target."""
    path = tmp_path_factory.mktemp("zoo") / "toy.pt"
    source = tiny_dataset(classes=4, channels=1, name="toy")
    SupernetTrainer(source, tiny_config(epochs=3)).fit(path)
    target = tiny_dataset(task="multi-label", classes=3, channels=3, name="other", seed=1)
    return path, source, target


def small_zoo_config(**kw):
    base = dict(num_archs=12, transfer_per_dataset=4, shard_size=5, recalib_images=64, recalib_batch=16,
                eval_batch=64, max_eval_images=0, probe_train_images=64, probe_val_images=32,
                probe_input_images=4, latency_runs=2)
    return ZooConfig(**{**base, **kw})


def test_sampling_is_unique_seeded_and_starts_with_the_extremes():
    archs = sample_unique(SPACE, 20, seed=3)
    assert len({a.arch_id for a in archs}) == 20
    assert archs[0] == SPACE.largest() and archs[1] == SPACE.smallest()
    assert archs == sample_unique(SPACE, 20, seed=3)
    assert archs[2:] != sample_unique(SPACE, 20, seed=4)[2:]


def test_sampling_never_asks_for_more_than_the_space_holds():
    tiny = SearchSpace(stem_width=4, widths=(4,), strides=(1,), depth_choices=(1,), kernel_choices=(3, 5),
                       expand_choices=(2,), head_width=4)
    archs = sample_unique(tiny, 50, seed=0)
    assert len(archs) == tiny.count() == 2


def test_recalibration_repairs_stale_batchnorm_statistics(trained):
    path, source, _ = trained
    from mednns.nn.checkpoint import load_supernet

    supernet, _ = load_supernet(path)
    net = supernet.extract(SPACE.smallest()).eval()
    y = source.labels("val")

    def acc():
        return evaluate_scores(y, predict(net, source.images("val")), source.spec.task)["acc"]

    train_x = to_tensor(source.images("train"))
    recalibrate_bn(net, [train_x])
    good = acc()
    with torch.no_grad():  # statistics of some other network: what a subnet inherits from the supernet
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(3.0)
                m.running_var.mul_(25.0)
    stale = acc()
    recalibrate_bn(net, [train_x[i:i + 16] for i in range(0, len(train_x), 16)])
    assert stale < good - 0.2
    assert acc() == pytest.approx(good, abs=0.05)
    # cumulative averaging: batch-wise recalibration gives the full-set mean of the first BN's input
    first_bn = net.stem[1]
    with torch.no_grad():
        feats = net.stem[0](train_x)
    torch.testing.assert_close(first_bn.running_mean, feats.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_folded_batchnorm_gives_the_same_outputs_with_no_batchnorm_left(trained):
    path, source, _ = trained
    from mednns.nn.checkpoint import load_supernet

    supernet, _ = load_supernet(path)
    net = supernet.extract(SPACE.largest())  # expand convs, depthwise, project, stem and head: every pair
    recalibrate_bn(net, [to_tensor(source.images("train"))])
    folded = fold_bn(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) > 5  # the original is untouched
    x = to_tensor(source.images("val"))
    with torch.no_grad():
        got, want = folded(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_zoo_table_follows_the_schema(trained, tmp_path):
    path, source, target = trained
    cfg = small_zoo_config()
    table = build_zoo(path, source, [target], tmp_path / "toy.parquet", cfg)
    assert list(table.columns) == list(COLUMNS)
    assert table.equals(read_zoo(tmp_path / "toy.parquet"))
    own = table[table.target_dataset == "toy"]
    other = table[table.target_dataset == "other"]
    assert len(own) == 12 and own.arch_id.is_unique and len(other) == 4
    assert set(other.arch_id) <= set(own.arch_id)
    assert {SPACE.largest().arch_id, SPACE.smallest().arch_id} <= set(other.arch_id)
    assert (table.source_dataset == "toy").all()
    for row in own.itertuples():
        arch = Arch.from_json(row.arch_json)
        assert arch.arch_id == row.arch_id
        assert len(row.encoding) == SPACE.encoding_size
        assert np.allclose(row.encoding, SPACE.encode(arch))
        assert len(row.embedding) == 2 * SPACE.head_width
        assert 0 <= row.val_acc <= 1 and 0 <= row.test_acc <= 1 and np.isnan(row.transfer_acc)
        assert row.macs > 0 and row.latency_ms > 0
    largest, smallest = (own[own.arch_id == a.arch_id].iloc[0] for a in (SPACE.largest(), SPACE.smallest()))
    assert largest.params > smallest.params and largest.macs > smallest.macs
    assert other.val_acc.isna().all() and other.transfer_auc.notna().all()
    assert own.val_acc.median() > 0.4  # 4 learnable classes, chance is 0.25


def test_scorer_matches_a_direct_evaluation(trained):
    """The fast path (shared tensors, one extraction per arch) scores what a plain loop scores."""
    path, source, _ = trained
    from mednns.nn.checkpoint import load_supernet

    supernet, _ = load_supernet(path)
    cfg = small_zoo_config().scoring()
    scorer = SubnetScorer(supernet, source, [], cfg)
    arch = sample_unique(SPACE, 5, seed=0)[4]
    row = scorer.score(arch, [])[0][0]
    net = supernet.extract(arch)
    recalibrate_bn(net, [to_tensor(source.images("train")[scorer.recalib_idx][i:i + 16]) for i in range(0, 64, 16)])
    direct = evaluate_scores(source.labels("val"), predict(net, source.images("val")), source.spec.task)
    assert row["val_acc"] == pytest.approx(direct["acc"]) and row["val_auc"] == pytest.approx(direct["auc"])


def test_the_store_gives_back_the_network_the_zoo_scored(trained, tmp_path):
    """Every later use of a subnet (evaluation, registry, export) goes through the store: with the zoo's
    recalibrated statistics it scores exactly its row (same images, same count), with no training data."""
    path, source, target = trained
    cfg = small_zoo_config(max_eval_images=20)
    table = build_zoo(path, source, [target], tmp_path / "toy.parquet", cfg)
    bn = BNStats.load(bn_stats_path(tmp_path / "toy.parquet"))
    assert len(bn) == 12 and bn.recalibration == Recalibration(64, cfg.seed, 16)
    store = SubnetStore(path.parent)
    subsets = cfg.own_subsets(source.spec.splits)
    for row in table[table.target_dataset == "toy"].itertuples():
        net = store.subnet("toy", row.arch_json, bn)
        assert net.cfg.recalibration == {"images": 64, "seed": cfg.seed, "batch": 16}
        for split in ("val", "test"):
            idx = subsets[split]
            assert row.eval_images == len(idx) == 20
            logits = predict(net, source.images(split)[idx], cfg.eval_batch, channels_last=True)
            scores = evaluate_scores(source.labels(split)[idx], logits, source.spec.task)
            assert scores["acc"] == getattr(row, f"{split}_acc") and scores["auc"] == getattr(row, f"{split}_auc")
    # the supernet's own statistics are not the scored network's
    stale = store.extract("toy", table.arch_json[0])
    assert not torch.equal(bn_state(stale)[1], bn[table.arch_id[0]][1])


def test_interrupted_build_resumes_without_rescoring(trained, tmp_path, monkeypatch):
    path, source, target = trained
    cfg = small_zoo_config()
    calls = []
    real_score = SubnetScorer.score

    def crash_on_eighth(self, arch, targets):
        calls.append(arch.arch_id)
        if len(calls) == 8:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the second shard
        return real_score(self, arch, targets)

    monkeypatch.setattr(SubnetScorer, "score", crash_on_eighth)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(path, source, [target], tmp_path / "toy.parquet", cfg)
    assert not (tmp_path / "toy.parquet").exists()
    first_shard_ids = calls[:5]

    calls.clear()
    monkeypatch.setattr(SubnetScorer, "score", lambda self, a, t: (calls.append(a.arch_id), real_score(self, a, t))[1])
    table = build_zoo(path, source, [target], tmp_path / "toy.parquet", cfg)
    assert len(calls) == 7 and not set(calls) & set(first_shard_ids)
    fresh = build_zoo(path, source, [target], tmp_path / "again.parquet", cfg)
    cols = [c for c in COLUMNS if c != "latency_ms"]
    pd.testing.assert_frame_equal(table[cols], fresh[cols])
    assert not (tmp_path / ".build").exists() or not any((tmp_path / ".build").iterdir())


def test_zoo_refuses_a_checkpoint_of_another_dataset(trained, tmp_path):
    path, _, target = trained
    from mednns.utils.errors import MedNNSError

    with pytest.raises(MedNNSError, match="supernet of toy, not of other"):
        build_zoo(path, target, [], tmp_path / "x.parquet", small_zoo_config())
