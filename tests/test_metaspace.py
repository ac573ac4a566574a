"""The meta-space: its losses on toy problems with known answers, the set encoder, training, the query
API (inputs, constraints, persistence), leave-one-dataset-out evaluation and the stage scripts."""

from __future__ import annotations

import itertools
import json
import shlex
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kendalltau

from conftest import TINY_SPACE, synthetic_arrays, write_npz
from mednns.utils.errors import MedNNSError
from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpace, MetaSpaceConfig, train_metaspace
from mednns.metaspace.encoders import SetEncoder
from mednns.metaspace.loo import (EvaluateConfig, evaluation_candidates, expected_max_of_random, judge,
                                       leave_one_out, markdown, random_baseline, summary)
from mednns.metaspace.features import features_of_images
from mednns.metaspace.fid import frechet_distance
from mednns.metaspace.losses import contrastive_loss, fid_loss, performance_loss, rank_loss
from mednns.nn.space import Arch, SearchSpace
from mednns.zoo.sampling import sample_unique
from mednns.zoo.schema import COLUMNS

SPACE = SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_SPACE.items()})
FEATURES = FeatureConfig(sample_images=48, image_size=16)
NAMES = ["aa", "bb", "cc", "dd"]


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_images(i: int, n: int = 60) -> np.ndarray:
    return synthetic_arrays(classes=2 + i, channels=1 + 2 * (i % 2), size=16, sizes={"train": n}, seed=i)["train_images"]


def toy_zoo(names=NAMES, n_archs=16, seed=0) -> pd.DataFrame:
    """A zoo table with the documented columns whose scores follow a known rule: on the first half
    of the datasets bigger subnets transfer better, on the second half smaller ones; a model also
    does better on its own source."""
    rng = np.random.default_rng(seed)
    archs = sample_unique(SPACE, n_archs, seed)
    rows = []
    for s in names:
        for a in archs:
            size = (sum(a.expands) + sum(a.kernels) / 2) / (len(a.expands) * 4.5)
            base = {"source_dataset": s, "arch_id": a.arch_id, "arch_json": a.to_json(),
                    "encoding": SPACE.encode(a).tolist(), "embedding": rng.normal(size=6).tolist(),
                    "params": int(1000 * size), "macs": int(20000 * size), "latency_ms": 0.1 + size,
                    "test_acc": 0.5, "test_auc": 0.5, "recalib_images": 64, "recalib_seed": 0, "recalib_batch": 16,
                    "eval_images": 32}
            for t in names:
                pref = 1.0 if names.index(t) < len(names) // 2 else -1.0
                acc = 0.6 + 0.15 * pref * size + 0.1 * (s == t) + rng.normal(0, 0.005)
                rows.append({**base, "target_dataset": t, "val_acc": 0.8 if s == t else np.nan,
                             "val_auc": 0.8 if s == t else np.nan, "transfer_acc": acc, "transfer_auc": acc})
    return pd.DataFrame(rows)[list(COLUMNS)]


def truncated_npy(array) -> bytes:
    """An npy member cut in half: a valid header, then too few bytes (reading it raises)."""
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def npz_with_corrupt_test(path, arrays: dict) -> None:
    """A MedMNIST-layout npz whose test_images member is not an array at all."""
    np.savez(path, **{k: v for k, v in arrays.items() if k != "test_images"})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("test_images.npy", truncated_npy(arrays["test_images"]))


@pytest.fixture(scope="module")
def toy_features():
    return {name: features_of_images(toy_images(i), FEATURES, name) for i, name in enumerate(NAMES)}


def small_config(**kw) -> MetaSpaceConfig:
    base = dict(dim=16, hidden=32, heads=2, steps=120, set_min=8, set_max=24, rows_per_dataset=12, top_models=3,
                query_images=40, log_every=10)
    return MetaSpaceConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(toy_features):
    zoo = toy_zoo()
    ms, history = train_metaspace(zoo, toy_features, small_config(steps=250), FEATURES, progress=False)
    return ms, history, zoo


# -- losses on toy problems -------------------------------------------------------------------
def _optimise(params, loss_fn, steps=300, lr=0.05):
    opt = torch.optim.Adam(params, lr=lr)
    first = float(loss_fn().detach())
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    return first, float(loss_fn().detach())


def test_performance_loss_recovers_a_linear_rule():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    w_true = torch.tensor([1.5, -2.0, 0.5])
    w = torch.zeros(3, requires_grad=True)
    first, last = _optimise([w], lambda: performance_loss(x @ w, x @ w_true), steps=500)
    assert last < 1e-4 < first
    torch.testing.assert_close(w.detach(), w_true, atol=1e-2, rtol=0)


def test_rank_loss_orders_free_scores_like_the_target():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(10, generator=g)
    p = torch.randn(10, generator=g, requires_grad=True)
    assert kendalltau(p.detach(), y).statistic < 0.9
    first, last = _optimise([p], lambda: rank_loss(p, y, temperature=0.5), steps=400)
    assert last < first
    assert kendalltau(p.detach(), y).statistic == pytest.approx(1.0)
    # its optimum: softmax(p) == softmax(y / T), i.e. p - y / T constant
    d = p.detach() - y / 0.5
    assert float(d.std()) < 0.05


def test_fid_loss_makes_embedding_distances_follow_fid():
    truth = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [4.0, 4.0]])
    fid = torch.cdist(truth, truth)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), requires_grad=True)
    first, last = _optimise([z], lambda: fid_loss(z, fid), steps=600)
    assert last < 1e-3 < first
    d = torch.cdist(z.detach(), z.detach())
    off = ~torch.eye(4, dtype=torch.bool)
    ratio = d[off] / fid[off]
    assert float(ratio.std() / ratio.mean()) < 0.05  # same distances up to one scale factor


def test_contrastive_loss_pulls_a_dataset_to_its_best_models():
    g = torch.Generator().manual_seed(3)
    anchor = torch.randn(8, generator=g, requires_grad=True)
    items = torch.randn(12, 8, generator=g, requires_grad=True)
    positive = torch.zeros(12, dtype=torch.bool)
    positive[[1, 5, 9]] = True
    first, last = _optimise([anchor, items], lambda: contrastive_loss(anchor, items, positive, 0.1))
    assert last < first
    sim = torch.nn.functional.cosine_similarity(items.detach(), anchor.detach()[None], dim=-1)
    assert set(sim.argsort(descending=True)[:3].tolist()) == {1, 5, 9}
    assert float(contrastive_loss(anchor, items, torch.zeros(12, dtype=torch.bool)).detach()) == 0.0


# -- the set encoder ----------------------------------------------------------------------------
def test_set_encoder_is_permutation_invariant_for_any_size():
    torch.manual_seed(0)
    enc = SetEncoder(7, 16, 5, heads=2).eval()
    for n in (1, 3, 50, 300):
        x = torch.randn(n, 7)
        perm = torch.randperm(n)
        with torch.no_grad():
            a, b = enc(x), enc(x[perm])
        assert a.shape == (5,)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        batch = torch.randn(3, 20, 7)
        torch.testing.assert_close(enc(batch)[1], enc(batch[1]), atol=1e-5, rtol=1e-5)


# -- training and query -------------------------------------------------------------------------
def test_training_lowers_every_loss_and_learns_the_toy_rule(trained):
    ms, history, zoo = trained
    early, late = history.iloc[:3].mean(), history.iloc[-3:].mean()
    for name in ("total", "performance", "rank", "contrastive"):
        assert late[name] < early[name], name
    assert ms.config["metrics"]["train_kendall_tau"] > 0.5
    assert set(ms.candidates.source_dataset) == set(NAMES) and len(ms.candidates) == 4 * 16


def test_query_of_an_unseen_dataset_returns_k_valid_candidates(trained):
    ms, _, zoo = trained
    unseen = synthetic_arrays(classes=3, channels=3, size=28, sizes={"train": 50}, seed=42)["train_images"]
    out = ms.query(unseen, k=7)
    for col in ("source_dataset", "arch_id", "arch_json", "predicted_score", "params", "macs", "latency_ms"):
        assert col in out.columns
    assert len(out) == 7 and out.predicted_score.is_monotonic_decreasing
    assert list(out["rank"]) == list(range(1, 8))
    known = set(zip(zoo.source_dataset, zoo.arch_id))
    for row in out.itertuples():
        assert (row.source_dataset, row.arch_id) in known
        assert Arch.from_json(row.arch_json).arch_id == row.arch_id
    full = ms.rank(unseen)
    assert len(full) == len(ms.candidates)
    pd.testing.assert_frame_equal(out, full.head(7))
    # grey (N, H, W) and (N, H, W, 1) are the same images
    grey = toy_images(0)
    pd.testing.assert_frame_equal(ms.query(grey, k=3), ms.query(grey[..., None], k=3))


def test_constraints_filter_and_nothing_meeting_them_is_one_clear_error(trained):
    ms, _, _ = trained
    images = toy_images(2)
    limit = float(ms.candidates.params.median())
    out = ms.query(images, k=5, constraints={"max_params": limit, "max_macs": None})
    assert (out.params <= limit).all() and len(out) == 5
    with pytest.raises(MedNNSError, match="no zoo model meets") as e:
        ms.query(images, constraints={"max_latency_ms": 1e-6})
    assert "\n" not in str(e.value)
    with pytest.raises(MedNNSError, match="unknown constraint"):
        ms.query(images, constraints={"max_flops": 10})
    with pytest.raises(MedNNSError, match="k must be"):
        ms.query(images, k=0)
    with pytest.raises(MedNNSError, match="uint8"):
        ms.query(images.astype(np.float32))


def test_save_load_round_trip_and_plain_weights(trained, tmp_path):
    ms, _, _ = trained
    images = toy_images(1)
    ms.save(tmp_path / "ms")
    ms.save(tmp_path / "ms")  # over an existing folder
    assert sorted(p.name for p in (tmp_path / "ms").iterdir()) == ["candidates.parquet", "config.json", "weights.pt"]
    state = torch.load(tmp_path / "ms" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = MetaSpace.load(tmp_path / "ms")
    pd.testing.assert_frame_equal(loaded.query(images, k=5), ms.query(images, k=5))
    assert json.loads((tmp_path / "ms" / "config.json").read_text())["extractor"] == FEATURES.extractor_id
    with pytest.raises(MedNNSError, match="no weights.pt"):
        MetaSpace.load(tmp_path / "nothing")


def test_query_takes_an_npz_path_reading_only_its_train_split(trained, tmp_path):
    ms, _, _ = trained
    arrays = synthetic_arrays(classes=3, channels=1, size=16, sizes={"train": 60, "val": 8, "test": 8}, seed=5)
    arrays["test_images"] = np.full((8, 16, 16), np.nan, dtype=np.float32)  # unusable: must not matter
    path = write_npz(tmp_path / "mine.npz", arrays)
    pd.testing.assert_frame_equal(ms.query(path, k=4), ms.query(arrays["train_images"], k=4))
    feats = features_of_images(arrays["train_images"], FeatureConfig(**{**FEATURES.to_dict(), "sample_images": 40}))
    feats.save(tmp_path / "mine_features.npz")
    pd.testing.assert_frame_equal(ms.query(tmp_path / "mine_features.npz", k=4), ms.query(path, k=4))
    with pytest.raises(MedNNSError, match="file not found"):
        ms.query(tmp_path / "missing.npz")


def test_leaving_a_dataset_out_removes_it_everywhere_and_ablation_weights(toy_features):
    zoo = toy_zoo()
    ms, history = train_metaspace(zoo, toy_features, small_config(steps=20, rank_weight=0, fid_weight=0,
                                                                  contrastive_weight=0), FEATURES,
                                  exclude=["bb"], progress=False)
    assert "bb" not in set(ms.candidates.source_dataset) and "bb" not in ms.config["datasets"]
    np.testing.assert_allclose(history.total, history.performance, rtol=1e-5)  # the others are off
    with pytest.raises(MedNNSError, match="no features"):
        train_metaspace(zoo, {k: v for k, v in toy_features.items() if k != "cc"}, small_config(steps=2), FEATURES,
                        progress=False)
    other = FeatureConfig(sample_images=48, image_size=16, seed=1)
    with pytest.raises(MedNNSError, match="extractor"):
        train_metaspace(zoo, toy_features, small_config(steps=2), other, progress=False)


def test_test_split_scores_never_reach_training(toy_features):
    """test_acc / test_auc are for reporting only: scrambling them changes nothing that is learnt."""
    zoo = toy_zoo(n_archs=6)
    scrambled = zoo.assign(test_acc=np.random.default_rng(0).uniform(size=len(zoo)), test_auc=np.nan)
    a, _ = train_metaspace(zoo, toy_features, small_config(steps=5), FEATURES, progress=False)
    b, _ = train_metaspace(scrambled, toy_features, small_config(steps=5), FEATURES, progress=False)
    for (k, v), w in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)


# -- evaluation ---------------------------------------------------------------------------------
def test_expected_max_of_random_matches_enumeration():
    v = np.array([0.3, 0.9, 0.5, 0.7, 0.1, 0.6])
    for k in (1, 2, 5, 6):
        brute = np.mean([max(c) for c in itertools.combinations(v, k)])
        assert expected_max_of_random(v, k) == pytest.approx(brute)


def test_judge_and_baselines_on_a_known_ranking():
    actual = np.array([0.5, 0.9, 0.7, 0.6])
    perfect = judge(actual, actual, 2)
    assert perfect["kendall_tau"] == pytest.approx(1) and perfect["top1_regret"] == 0
    worst = judge(-actual, actual, 2)
    assert worst["kendall_tau"] == pytest.approx(-1)
    assert worst["top1_regret"] == pytest.approx(0.4) and worst["top2_regret"] == pytest.approx(0.3)
    rnd = random_baseline(actual, 2)
    assert rnd["top1_regret"] == pytest.approx(0.9 - actual.mean())


_TRAIN_AND_SAVE = """
import sys
sys.path.insert(0, {tests!r})
from test_metaspace import FEATURES, NAMES, features_of_images, small_config, toy_images, toy_zoo
from mednns.metaspace import train_metaspace
feats = {{n: features_of_images(toy_images(i), FEATURES, n) for i, n in enumerate(NAMES)}}
train_metaspace(toy_zoo(), feats, small_config(steps=40), FEATURES, progress=False)[0].save(sys.argv[1])
"""


def test_two_runs_in_two_processes_give_the_same_metaspace(tmp_path):
    """Same inputs, same meta-space: a rerun (another process, as `dvc repro` on another day) changes nothing."""
    import subprocess
    import sys
    from pathlib import Path

    code = _TRAIN_AND_SAVE.format(tests=str(Path(__file__).parent))
    for run in ("a", "b"):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / run)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
    a, b = (torch.load(tmp_path / run / "weights.pt", weights_only=True) for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_leave_one_out_reports_every_method_and_dataset(toy_features):
    zoo = toy_zoo(n_archs=10)
    cfg = EvaluateConfig(top_k=3, max_candidates=20, logme=False, metaspace_seeds=(0, 1))
    results = leave_one_out(zoo, toy_features, small_config(steps=30), FEATURES, cfg, progress=False)
    assert set(results.dataset) == set(NAMES) and set(results.seed) == {0, 1}
    # one meta-space per seed; the baselines do not depend on it
    base = results[results.method != "metaspace"]
    pd.testing.assert_frame_equal(base[base.seed == 0].drop(columns="seed").reset_index(drop=True),
                                  base[base.seed == 1].drop(columns="seed").reset_index(drop=True))
    assert "±" in markdown(results, 3)
    assert set(results.method) == {"metaspace", "fid_largest", "random", "oracle"}
    for d in NAMES:
        cands = evaluation_candidates(zoo, d, 20, 0)
        assert len(cands) == 20 and d not in set(cands.source_dataset)
        assert set(cands.groupby("source_dataset").params.idxmax().map(cands.arch_id)) <= set(cands.arch_id)
        r = results[(results.dataset == d) & (results.seed == 0)].set_index("method")
        assert r.loc["oracle", "top1_regret"] == 0 and r.loc["oracle", "kendall_tau"] == pytest.approx(1)
        assert r.loc["random", "top1_regret"] == pytest.approx(cands.transfer_acc.max() - cands.transfer_acc.mean())
        assert (r.top1_regret >= -1e-12).all() and (r.top3_regret <= r.top1_regret + 1e-12).all()
        # FID-nearest source's largest subnet, found independently
        fid = {s: frechet_distance(toy_features[d].mean, toy_features[d].cov, toy_features[s].mean,
                                   toy_features[s].cov) for s in set(cands.source_dataset)}
        nearest = cands[cands.source_dataset == min(fid, key=fid.get)]
        assert r.loc["fid_largest", "top1_score"] == pytest.approx(nearest.loc[nearest.params.idxmax(), "transfer_acc"])
    s = summary(results)
    assert set(s["mean"]) == set(results.method) and set(s["datasets"]) == set(NAMES)
    md = markdown(results, 3)
    assert "| meta-space |" in md and "top-3 regret" in md and all(d in md for d in NAMES)


# -- the stages under `dvc repro`, in a scratch copy of the project --------------------------------
def _dvc(project, *args):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": ""}, timeout=600)


def test_dvc_repro_of_the_metaspace_stages_and_their_plots(dvc_project, data_dir, monkeypatch):
    import yaml

    names = ["toya", "toyb"]
    for i, name in enumerate(names):
        write_npz(data_dir / f"{name}.npz", synthetic_arrays(classes=2 + i, channels=1 + 2 * i, size=16,
                                                             sizes={"train": 40, "val": 8, "test": 8}, seed=i))
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    params["datasets"] = names
    params["features"] = FEATURES.to_dict()
    params["metaspace"] = {**params["metaspace"], **{k: getattr(small_config(steps=20), k) for k in
                           ("dim", "hidden", "heads", "steps", "set_min", "set_max", "rows_per_dataset",
                            "top_models", "query_images")}}
    # With two datasets, leaving one out leaves no cross-dataset rows: own rows keep a meta-space trainable.
    params["metaspace"]["own_rows"] = True
    params["evaluate"] = {**params["evaluate"], "logme": False}
    (dvc_project / "params.yaml").write_text(yaml.safe_dump(params))

    run = _dvc(dvc_project, "repro", "fid")  # prepare@*, dataset_features@*, fid
    assert run.returncode == 0, run.stderr + run.stdout
    for name in names:
        assert DatasetFeatures.load(dvc_project / f"features/{name}.npz").features.shape[0] == 40
    table = pd.read_csv(dvc_project / "metrics/fid.csv")
    assert len(table) == 4 and set(table.dataset) == set(names)

    # zoo tables written directly (build_zoo and its supernets are tested in test_zoo.py)
    zoo = toy_zoo(names, n_archs=6)
    (dvc_project / "zoo").mkdir()
    for name in names:
        zoo[zoo.source_dataset == name].to_parquet(dvc_project / "zoo" / f"{name}.parquet")
    (dvc_project / "models" / "supernets").mkdir(parents=True)  # LogME is off: no checkpoint is read
    run = _dvc(dvc_project, "repro", "--single-item", "train_metaspace")
    assert run.returncode == 0, run.stderr + run.stdout
    from pipelines import leave_one_out  # no MLflow in it: in-process (its cmd's arguments), to save a subprocess

    cmd = yaml.safe_load((dvc_project / "dvc.yaml").read_text())["stages"]["leave_one_out"]["cmd"]
    monkeypatch.chdir(dvc_project)
    leave_one_out.main(shlex.split(cmd)[3:])
    ms = MetaSpace.load(dvc_project / "models" / "metaspace")
    assert len(ms.query(toy_images(3), k=3)) == 3 and len(ms.candidates) == 12
    points = pd.read_csv(dvc_project / "plots" / "metaspace_map.csv")
    assert (points.kind == "dataset").sum() == 2 and (points.kind == "model").sum() == 12
    assert (dvc_project / "plots" / "metaspace_map.png").stat().st_size > 0
    assert (dvc_project / "mlflow.db").is_file()
    result = json.loads((dvc_project / "metrics" / "leave_one_out.json").read_text())
    assert set(result["datasets"]) == set(names) and "metaspace" in result["mean"]
    assert "| meta-space |" in (dvc_project / "metrics" / "leave_one_out.md").read_text()

    mine = ["metrics/fid.csv", "plots/metaspace_map.csv", "plots/metaspace_map.png", "plots/metaspace_loss.csv"]
    shown = _dvc(dvc_project, "plots", "show", "--json", *mine)
    assert shown.returncode == 0, shown.stderr + shown.stdout
    out = json.loads(shown.stdout)
    errors = [e for e in out.get("errors") or [] if e.get("source") in mine]  # other stages' files are absent
    assert not errors, errors
    specs = {path: entry[0] for path, entry in out["data"].items()}
    heat = json.dumps(specs["metrics/fid.csv"]["content"])
    assert '"rect"' in heat and '"fid"' in heat and "<DVC_METRIC" not in heat
    assert "<DVC_METRIC" not in json.dumps(specs["plots/metaspace_map.csv"]["content"])
    assert specs["plots/metaspace_map.png"]["type"] == "image"
    metrics = _dvc(dvc_project, "metrics", "show", "--json")
    assert "metrics/leave_one_out.json" in metrics.stdout


def test_training_rows_are_cross_dataset_unless_own_rows_are_asked_for():
    from mednns.metaspace.train import pair_table

    zoo = toy_zoo(NAMES[:3], n_archs=4)
    cross = pair_table(zoo, NAMES[:3], top_models=2)
    assert len(cross.candidates) == 12  # every model is a candidate, own rows or not
    sources = cross.candidates.source_dataset.to_numpy()[cross.model]
    assert len(cross.y) == 3 * 2 * 4 and (sources != np.array(cross.datasets)[cross.target]).all()
    both = pair_table(zoo, NAMES[:3], top_models=2, own_rows=True)
    own = both.candidates.source_dataset.to_numpy()[both.model] == np.array(both.datasets)[both.target]
    assert own.sum() == 12 and np.allclose(both.raw[own], 0.8)  # an own row is scored by its val_acc
    only_own = zoo[zoo.source_dataset == zoo.target_dataset]
    with pytest.raises(MedNNSError, match="transfer_per_dataset"):
        pair_table(only_own, NAMES[:3], top_models=2)
