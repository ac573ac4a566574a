"""The meta-space on a real (tiny) zoo: supernets trained and scored by the zoo code, then features,
training, a query, and the leave-one-dataset-out evaluation with the LogME baseline on the subnets."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_config, tiny_dataset
from mednns.metaspace import FeatureConfig, MetaSpaceConfig, train_metaspace
from mednns.metaspace.loo import EvaluateConfig, SubnetFeatures, TrainSplit, leave_one_out, markdown
from mednns.metaspace.features import features_of_images
from mednns.train.supernet import SupernetTrainer
from mednns.zoo import BNStats, SubnetStore, ZooConfig, bn_stats_path, build_zoo

FEATURES = FeatureConfig(sample_images=48, image_size=16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("mszoo")
    datasets = [tiny_dataset(classes=3, name="aa", seed=0),
                tiny_dataset(task="multi-label", classes=3, channels=3, name="bb", seed=1),
                tiny_dataset(task="binary", classes=2, name="cc", seed=2)]  # three: a left-out one leaves two
    cfg = ZooConfig(num_archs=5, transfer_per_dataset=4, shard_size=5, recalib_images=32, recalib_batch=16,
                    eval_batch=64, max_eval_images=0, probe_train_images=48, probe_val_images=32,
                    probe_input_images=2, latency_runs=1)
    tables = []
    for ds in datasets:
        SupernetTrainer(ds, tiny_config(epochs=1)).fit(root / f"{ds.spec.name}.pt")
        others = [o for o in datasets if o is not ds]
        tables.append(build_zoo(root / f"{ds.spec.name}.pt", ds, others, root / f"{ds.spec.name}.parquet", cfg))
    import pandas as pd

    zoo = pd.concat(tables, ignore_index=True)
    features = {ds.spec.name: features_of_images(ds.images("train"), FEATURES, ds.spec.name) for ds in datasets}
    return root, {ds.spec.name: ds for ds in datasets}, zoo, features


def test_metaspace_on_a_real_tiny_zoo_with_logme(tiny_zoo):
    root, datasets, zoo, features = tiny_zoo
    ms_cfg = MetaSpaceConfig(dim=16, hidden=32, heads=2, steps=30, set_min=8, set_max=24, rows_per_dataset=8,
                             top_models=2, query_images=40)
    ms, _ = train_metaspace(zoo, features, ms_cfg, FEATURES, progress=False)
    out = ms.query(datasets["bb"].images("test"), k=3)
    assert len(out) == 3 and set(out.source_dataset) <= {"aa", "bb", "cc"}

    def split(name):
        ds = datasets[name]
        return TrainSplit(ds.images("train"), ds.labels("train"), ds.spec.task, ds.spec.num_classes)

    subnets = SubnetFeatures(SubnetStore(root), lambda name: BNStats.load(bn_stats_path(root / f"{name}.parquet")),
                             batch=16)
    results = leave_one_out(zoo, features, ms_cfg, FEATURES, EvaluateConfig(top_k=2, logme_images=40, max_candidates=0),
                            subnets, split, progress=False)
    assert set(results.method) == {"metaspace", "logme", "fid_largest", "random", "oracle"}
    assert set(results.dataset) == {"aa", "bb", "cc"}
    assert (results.candidates == 8).all()  # the other two sources' 4 archs each with transfer rows
    assert np.isfinite(results[["kendall_tau", "top1_regret", "top2_regret"]].to_numpy()).all()
    assert "| LogME |" in markdown(results, 2)


def test_the_selector_runs_on_the_metaspace_api(tiny_zoo):
    """The selector needs only MetaSpace.query and a store over the supernet folder."""
    from mednns.selector import FinetuneConfig, select

    root, datasets, zoo, features = tiny_zoo
    ms_cfg = MetaSpaceConfig(dim=16, hidden=32, heads=2, steps=10, set_min=8, set_max=24, rows_per_dataset=8,
                             top_models=2, query_images=40)
    ms, _ = train_metaspace(zoo, features, ms_cfg, FEATURES, exclude=["bb"], progress=False)
    sel = select(datasets["bb"], ms, SubnetStore(root), k=2, finetune=FinetuneConfig(epochs=0))
    assert sel.chosen.source_dataset in {"aa", "cc"} and len(sel.candidates) == 2
    assert sel.chosen.arch_id in set(ms.candidates.arch_id)
    # the chosen network says what it is: the chosen arch of its source, with the new dataset's head
    assert (sel.net.cfg.arch_id, sel.net.cfg.source) == (sel.chosen.arch_id, sel.chosen.source_dataset)
    assert sel.net.cfg.num_classes == 3 and sel.net.cfg.task == "multi-label"
