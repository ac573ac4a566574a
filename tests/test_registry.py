"""The model registry against a real `mlflow server`: register a zoo, load by name, resume, aliases."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import synthetic
from conftest import TINY_SPACE, run_cli, tiny_dataset
from mednns.nn.checkpoint import load_supernet
from mednns.utils.errors import MedNNSError
from mednns.nn.space import Arch, SearchSpace
from mednns.zoo import ZooConfig, build_zoo
from mednns.zoo.store import BNStats, bn_stats_path, load_bn_state
from registry.artifacts import md5_file
from registry.lookup import list_models, load_model, resolve_version
from registry.models import CHAMPION, ZooRegistrar, dataset_name, subnet_name, supernet_name, sync
from registry.client import Registry

X = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
IMAGES = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16), dtype=np.uint8)  # as an npz stores them


def git_dvc_init(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=root, check=True)


def dvc_add(root: Path, *paths: str) -> None:
    from dvc.repo import Repo

    with Repo(str(root)) as r:
        r.add([str(root / p) for p in paths])


def git_commit(root: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=root,
                   check=True)


def random_supernet(path: Path, name: str = "toy", seed: int = 0) -> Path:
    return synthetic.random_supernet(path, tiny_dataset(name=name).spec, SearchSpace.from_dict(TINY_SPACE), seed)


def small_zoo_config(**kw) -> ZooConfig:
    base = dict(num_archs=4, transfer_per_dataset=0, shard_size=8, recalib_images=64, recalib_batch=32,
                eval_batch=64, max_eval_images=0, probe_train_images=16, probe_val_images=16,
                probe_input_images=2, latency_runs=1)
    return ZooConfig(**{**base, **kw})


def synthetic_zoo(ckpt: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """A zoo table of `n` archs, written to zoo/<dataset>.parquet of the checkpoint's project."""
    out = ckpt.parents[2] / "zoo" / ckpt.with_suffix(".parquet").name
    return synthetic.synthetic_zoo(ckpt, n, out, seed)


def expected(ckpt: Path, arch_json: str, bn: Path, images: np.ndarray | None = None) -> torch.Tensor:
    """What the registered subnet must compute: extract(arch) with the zoo's statistics for it, on X (or
    on uint8 `images`, fed as the library feeds them)."""
    from mednns import predict

    net, _ = load_supernet(ckpt)
    sub = net.extract(Arch.from_json(arch_json)).eval()
    load_bn_state(sub, *BNStats.load(bn)[sub.arch.arch_id])
    if images is not None:
        return predict(sub, images, channels=1, size=16, channels_last=True)
    with torch.no_grad():
        return sub(X)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_server):
    """A git + DVC project with a trained tiny supernet `toy` and its scored zoo, registered once."""
    root = tmp_path_factory.mktemp("regproj") / "project"
    git_dvc_init(root)
    source = tiny_dataset(name="toy")
    ckpt = random_supernet(root / "models" / "supernets" / "toy.pt")
    build_zoo(ckpt, source, [], root / "zoo" / "toy.parquet", small_zoo_config())
    dvc_add(root, "models/supernets/toy.pt", "zoo/toy.parquet", "zoo/toy.bn.pt")
    git_commit(root, "zoo v1")
    keep = tmp_path_factory.mktemp("v1") / "toy.pt"
    shutil.copy2(ckpt, keep)
    keep_bn = keep.with_name("toy.bn.pt")
    shutil.copy2(root / "zoo" / "toy.bn.pt", keep_bn)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
        mp.chdir(root)
        report = sync(uri=mlflow_server.uri, workers=4, progress=False)
        yield {"root": root, "ckpt_v1": keep, "bn_v1": keep_bn, "source": source, "report": report,
               "zoo": pd.read_parquet(root / "zoo" / "toy.parquet"), "uri": mlflow_server.uri}


def test_register_a_zoo_and_load_every_subnet_by_name(project):
    report, zoo, uri = project["report"], project["zoo"], project["uri"]
    assert report.created == len(zoo) == 4 and report.models_created == 4 and report.supernets_created == 1
    md5 = md5_file(project["ckpt_v1"])
    dvc_md5 = (project["root"] / "models/supernets/toy.pt.dvc").read_text()
    assert f"md5: {md5}" in dvc_md5  # the same hash DVC records
    for row in zoo.itertuples():
        name = subnet_name("toy", row.arch_id)
        net = load_model(name, uri=uri)
        assert isinstance(net, torch.nn.Module) and not net.training
        with torch.no_grad():
            assert torch.allclose(net(X), expected(project["ckpt_v1"], row.arch_json, project["bn_v1"]), atol=1e-6)
    v = resolve_version(subnet_name("toy", zoo.arch_id[3]), Registry(uri))
    for key in ("dataset", "arch_id", "params", "macs", "latency_ms", "val_acc", "test_acc", "val_auc", "test_auc",
                "git_commit", "checkpoint_md5", "checkpoint", "arch_json"):
        assert v.tags.get(key) not in (None, ""), key
    assert v.tags["checkpoint_md5"] == md5 and v.tags["checkpoint"] == "models/supernets/toy.pt"
    assert len(v.tags["git_commit"]) >= 40 and int(v.tags["params"]) == int(zoo.params[3])
    # the other spellings of a name, and the supernet itself
    a = zoo.arch_id[1]
    ref = expected(project["ckpt_v1"], zoo.arch_json[1], project["bn_v1"])
    for spelling in (f"models:/{subnet_name('toy', a)}/1", f"toy.{a}", a):
        with torch.no_grad():
            assert torch.allclose(load_model(spelling, uri=uri)(X), ref, atol=1e-6)
    supernet = load_model(supernet_name("toy"), uri=uri)
    assert type(supernet).__name__ == "Supernet"


def test_pyfunc_loads_a_subnet_from_a_models_uri(project):
    import mlflow

    zoo, uri = project["zoo"], project["uri"]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    row = zoo.iloc[2]
    model = mlflow.pyfunc.load_model(f"models:/{subnet_name('toy', row.arch_id)}/1")
    ref = expected(project["ckpt_v1"], row.arch_json, project["bn_v1"], IMAGES).numpy()
    np.testing.assert_allclose(model.predict(IMAGES), ref, atol=1e-5)
    with torch.no_grad():  # the module itself still takes normalised float tensors
        np.testing.assert_allclose(model.unwrap_python_model()(X).numpy(),
                                   expected(project["ckpt_v1"], row.arch_json, project["bn_v1"]).numpy(), atol=1e-6)
    with pytest.raises(Exception, match="does not match expected"):  # the signature checks the input
        model.predict(IMAGES[..., None].repeat(3, axis=-1))
    champion = mlflow.pyfunc.load_model(f"models:/{dataset_name('toy')}@{CHAMPION}")
    best = zoo.sort_values(["val_acc", "arch_id"], ascending=[False, True]).iloc[0]
    np.testing.assert_allclose(champion.predict(IMAGES), expected(project["ckpt_v1"], best.arch_json, project["bn_v1"],
                                                                  IMAGES).numpy(), atol=1e-5)


def test_rerun_registers_nothing_new(project):
    uri = project["uri"]
    before = len(Registry(uri).search_versions("tags.dataset = 'toy'"))
    again = sync(zoo_dir=project["root"] / "zoo", supernet_dir=project["root"] / "models/supernets", uri=uri,
                 repo=project["root"], progress=False)
    assert again.created == 0 and again.models_created == 0 and again.supernets_created == 0
    assert again.described == 0 and again.artifacts == 0  # every card already says what its tags say
    assert len(Registry(uri).search_versions("tags.dataset = 'toy'")) == before


def test_a_card_that_is_missing_or_wrong_is_rewritten_by_the_next_sync(project):
    root, uri, zoo = project["root"], project["uri"], project["zoo"]
    reg = Registry(uri)
    v = resolve_version(subnet_name("toy", zoo.arch_id[0]), reg)
    card = v.description
    reg.client.update_model_version(v.name, v.version, description="")  # as registered before cards
    w = resolve_version(subnet_name("toy", zoo.arch_id[1]), reg)
    reg.client.update_model_version(w.name, w.version, description=w.description.replace("/1", "/7"))
    rep = sync(zoo_dir=root / "zoo", supernet_dir=root / "models/supernets", uri=uri, repo=root, progress=False)
    assert rep.created == 0 and rep.described == 2
    assert resolve_version(v.name, reg).description == card
    assert f"models:/{w.name}/{w.version}" in resolve_version(w.name, reg).description


def test_lineage_of_a_checkpoint_made_elsewhere_is_a_registry_run_with_its_settings(project):
    reg = Registry(project["uri"])
    v = resolve_version(subnet_name("toy", project["zoo"].arch_id[0]), reg)
    run = reg.client.get_run(v.run_id)  # no training run of this checkpoint in this store
    assert reg.client.get_experiment(run.info.experiment_id).name == "mednns-registry"
    assert run.data.params["dataset"] == "toy" and run.data.params["checkpoint"] == "models/supernets/toy.pt"
    assert "space.widths" in run.data.params and "final_val_acc" in run.data.metrics
    assert v.source == f"{run.info.artifact_uri}/loader"


def test_the_server_shows_a_subnet_versions_signature(project):
    """What the MLflow UI asks for on a version's page: its MLmodel, with the signature."""
    import requests

    v = resolve_version(subnet_name("toy", project["zoo"].arch_id[0]), Registry(project["uri"]))
    r = requests.get(f"{project['uri']}/model-versions/get-artifact",
                     params={"name": v.name, "version": v.version, "path": "MLmodel"}, timeout=30)
    assert r.status_code == 200, r.text[:500]
    assert "signature" in r.text and "uint8" in r.text


def test_list_models_filters(project):
    zoo, uri = project["zoo"], project["uri"]
    df = list_models(dataset="toy", uri=uri)
    assert len(df) == 4 and set(df.arch_id) == set(zoo.arch_id)
    assert list(df.val_acc) == sorted(df.val_acc, reverse=True)
    cut = float(np.median(zoo.val_acc))
    assert set(list_models(dataset="toy", min_acc=cut, uri=uri).arch_id) == set(zoo.arch_id[zoo.val_acc >= cut])
    small = int(np.median(zoo.params))
    got = list_models(dataset="toy", max_params=small, uri=uri)
    assert set(got.arch_id) == set(zoo.arch_id[zoo.params <= small]) and (got.params <= small).all()
    assert list_models(dataset="nosuchdataset", uri=uri).empty


def test_a_rescored_zoo_of_the_same_checkpoint_refreshes_tags_not_versions(project):
    root, uri, zoo = project["root"], project["uri"], project["zoo"]
    path = root / "zoo/toy.parquet"
    worst = zoo.sort_values("val_acc").arch_id.iloc[0]
    rescored = zoo.copy()
    rescored.loc[rescored.arch_id == worst, "val_acc"] = 0.0123
    rescored.to_parquet(path, index=False)
    try:
        rep = sync(zoo_dir=root / "zoo", supernet_dir=root / "models/supernets", uri=uri, repo=root, progress=False)
        assert rep.created == 0 and rep.retagged == len(zoo)  # every row's zoo_md5 tag moves
        v = resolve_version(subnet_name("toy", worst), Registry(uri))
        assert int(v.version) == 1 and v.tags["val_acc"] == "0.0123" and v.tags["zoo_md5"] == md5_file(path)
        assert "| val | 0.0123 |" in v.description  # the card follows its tags
    finally:
        zoo.to_parquet(path, index=False)
        sync(zoo_dir=root / "zoo", supernet_dir=root / "models/supernets", uri=uri, repo=root, progress=False)


def test_champion_moves_with_a_newer_zoo_and_the_old_version_stays_loadable(project, tmp_path):
    root, uri = project["root"], project["uri"]
    old = resolve_version(f"{dataset_name('toy')}@{CHAMPION}", Registry(uri))
    ckpt = root / "models/supernets/toy.pt"
    random_supernet(ckpt, seed=1)  # zoo v2: a retrained supernet
    table = synthetic_zoo(ckpt, 8)
    old_best = old.tags["arch_id"]
    table.loc[table.arch_id != old_best, "val_acc"] = 0.1
    new_best = table.arch_id[table.arch_id != old_best].iloc[0]
    table.loc[table.arch_id == new_best, "val_acc"] = 0.99
    table.to_parquet(root / "zoo/toy.parquet", index=False)
    dvc_add(root, "models/supernets/toy.pt", "zoo/toy.parquet", "zoo/toy.bn.pt")
    git_commit(root, "zoo v2")

    report = sync(zoo_dir=root / "zoo", supernet_dir=root / "models/supernets", uri=uri, repo=root, progress=False)
    new = resolve_version(f"{dataset_name('toy')}@{CHAMPION}", Registry(uri))
    assert report.created == 8 and int(new.version) > int(old.version)
    assert new.tags["arch_id"] == new_best and new.tags["checkpoint_md5"] == md5_file(ckpt)
    with torch.no_grad():
        assert torch.allclose(load_model(f"toy@{CHAMPION}", repo=root, uri=uri)(X),
                              expected(ckpt, new.tags["arch_json"], bn_stats_path(root / "zoo/toy.parquet")), atol=1e-6)
        # the old champion and the old version of a subnet still load, from the DVC cache by md5
        assert torch.allclose(load_model(f"{dataset_name('toy')}/{old.version}", repo=root, uri=uri)(X),
                              expected(project["ckpt_v1"], old.tags["arch_json"], project["bn_v1"]), atol=1e-6)
        both = set(project["zoo"].arch_id) & set(table.arch_id)
        a = sorted(both)[0]
        arch_json = table.arch_json[table.arch_id == a].iloc[0]
        assert torch.allclose(load_model(f"{subnet_name('toy', a)}/1", repo=root, uri=uri)(X),
                              expected(project["ckpt_v1"], arch_json, project["bn_v1"]), atol=1e-6)
        assert torch.allclose(load_model(subnet_name("toy", a), repo=root, uri=uri)(X), expected(ckpt, arch_json, bn_stats_path(root / "zoo/toy.parquet")),
                              atol=1e-6)
    # outside the checkout (no workspace file, no DVC cache) the old champion comes from the registry's
    # artifact store, through the download cache
    with torch.no_grad():
        assert torch.allclose(load_model(f"{dataset_name('toy')}/{old.version}", repo=tmp_path, uri=uri)(X),
                              expected(project["ckpt_v1"], old.tags["arch_json"], project["bn_v1"]), atol=1e-6)
    # a file that is nowhere (not here, not in the registry): one clear error
    from registry.lookup import build_from_tags

    gone = {**old.tags, "checkpoint_md5": "0" * 32}
    with pytest.raises(MedNNSError, match="not found") as err:
        build_from_tags(gone, repo=tmp_path, source=old.source, uri=uri)
    assert "\n" not in str(err.value)


def test_errors_are_one_line(project, tmp_path):
    uri = project["uri"]
    with pytest.raises(MedNNSError, match="no registered model"):
        load_model("mednns.toy.000000000000", uri=uri)
    with pytest.raises(MedNNSError, match="unreachable"):
        load_model("mednns.toy", uri="http://127.0.0.1:9")
    with pytest.raises(MedNNSError, match="checkpoint not found"):
        ZooRegistrar(Registry(uri), repo=tmp_path).sync_dataset(project["root"] / "zoo/toy.parquet",
                                                                tmp_path / "missing.pt")


def test_cli_zoo_list_show_sync_and_errors(project):
    root, uri = project["root"], project["uri"]
    env = {"MLFLOW_TRACKING_URI": uri, "COLUMNS": "80"}  # piped through an 80-column terminal's pipe
    out = run_cli("registry", "sync", cwd=root, env=env)
    assert out.returncode == 0, out.stderr
    assert "0 new" in out.stdout
    rows = list_models(dataset="toy", uri=uri)
    out = run_cli("zoo", "list", "--dataset", "toy", "--limit", "3", cwd=root, env=env)
    assert out.returncode == 0, out.stderr
    assert "val_acc" in out.stdout and "…" not in out.stdout
    for r in rows.head(3).itertuples():  # every value whole, however wide the line
        line = next(line for line in out.stdout.splitlines() if line.startswith(r.name + " "))
        assert line.split()[1:] == [str(r.version), f"{r.params:,}", f"{r.macs:,}", f"{r.latency_ms:.2f}",
                                    f"{r.val_acc:.4f}", f"{r.test_acc:.4f}"]
    listed = run_cli("zoo", "list", "--dataset", "toy", "--json", cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [x["name"] for x in records] == list(rows.name) and [x["val_acc"] for x in records] == list(rows.val_acc)
    name = rows.name[0]
    out = run_cli("zoo", "show", name, cwd=root, env=env)
    assert out.returncode == 0 and "checkpoint_md5" in out.stdout and name in out.stdout
    shown = json.loads(run_cli("zoo", "show", name, "--json", cwd=root, env=env).stdout)
    assert shown["name"] == name and shown["tags"]["arch_id"] == rows.arch_id[0]
    assert f"models:/{name}/{shown['version']}" in shown["description"]  # the version's card
    for args, env_over in ((("zoo", "show", "mednns.toy.000000000000"), env),
                           (("zoo", "list"), {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})):
        out = run_cli(*args, cwd=root, env=env_over)
        assert out.returncode == 1, out.stdout
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr


# --------------------------------------------------------------------------------------------------
# interruption and concurrency, on a server of their own


def _count(db: Path) -> int:
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                return con.execute("select count(*) from model_versions").fetchone()[0]
        except sqlite3.Error:
            time.sleep(0.05)
    raise AssertionError(f"cannot read {db}")


def _versions(uri: str, md5: str) -> pd.Series:
    vs = Registry(uri).search_versions(f"tags.checkpoint_md5 = '{md5}' AND tags.kind = 'subnet'")
    return pd.Series([v.name for v in vs]).value_counts()


def test_server_killed_mid_registration_then_a_rerun_repairs_everything(mlflow_server, tmp_path, monkeypatch):
    """SIGKILL the (session's) server mid-way, restart it on the same database, re-run: all there once."""
    root = tmp_path
    (root / "dvc.yaml").write_text("stages: {}\n")
    ckpt = random_supernet(root / "models/supernets/kill.pt", name="kill")
    table = synthetic_zoo(ckpt, 120)
    zoo = root / "zoo/kill.parquet"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = mlflow_server
    try:
        errors = []

        def register():
            try:
                ZooRegistrar(Registry(server.uri), repo=root, workers=4).sync_dataset(zoo, ckpt, progress=False)
            except BaseException as e:  # noqa: BLE001 - recorded for the assertion below
                errors.append(e)

        worker = threading.Thread(target=register)
        worker.start()
        db = server.root / "mlflow.db"
        base = _count(db)
        deadline = time.time() + 120
        count = 0
        while time.time() < deadline and worker.is_alive():
            count = _count(db) - base
            if count >= 20:
                break
            time.sleep(0.05)
        assert count >= 20, "registration never got going"
        server.stop(kill=True)  # SIGKILL the server and its workers mid-way
        worker.join(timeout=120)
        assert not worker.is_alive() and errors, "registration should fail once the server is gone"
        assert isinstance(errors[0], MedNNSError) and "\n" not in str(errors[0])

        server.start()  # same database, same port
        md5 = md5_file(ckpt)
        partial = _versions(server.uri, md5)
        assert 0 < partial.sum() < len(table)
        report = ZooRegistrar(Registry(server.uri), repo=root, workers=4).sync_dataset(zoo, ckpt, progress=False)
        counts = _versions(server.uri, md5)
        assert report.created == len(table) - len(partial)
        assert len(counts) == len(table) and (counts == 1).all()
        assert set(counts.index) == {subnet_name("kill", a) for a in table.arch_id}

        # two registrations at once (a newer checkpoint): still exactly one version per subnet
        ckpt2 = random_supernet(root / "v2/models/supernets/kill.pt", name="kill", seed=3)
        small = synthetic_zoo(ckpt2, 40)
        reports = []
        threads = [threading.Thread(target=lambda: reports.append(ZooRegistrar(Registry(server.uri), repo=root,
                   workers=4).sync_dataset(root / "v2/zoo/kill.parquet", ckpt2, progress=False))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(reports) == 2  # neither failed
        counts = _versions(server.uri, md5_file(ckpt2))
        assert len(counts) == len(small) == 40 and (counts == 1).all()
        champions = Registry(server.uri).search_versions(f"name = '{dataset_name('kill')}'")
        assert len({v.tags["key"] for v in champions}) == len(champions) == 2
    finally:
        if server.proc is None:
            server.start()


def test_two_processes_registering_one_zoo_at_once_register_every_subnet_once(mlflow_server, tmp_path):
    """Two `mednns registry sync` processes (not threads: no shared client, no shared memory) on the same
    zoo against one server: each subnet, the supernet and the champion exactly once, and both succeed."""
    root = tmp_path
    (root / "dvc.yaml").write_text("stages: {}\n")
    ckpt = random_supernet(root / "models/supernets/procs.pt", name="procs", seed=5)
    table = synthetic_zoo(ckpt, 60, seed=5)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.uri}
    cmd = [str(Path(sys.executable).with_name("mednns")), "registry", "sync", "--dataset", "procs",
           "--workers", "4"]
    procs = [subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert re.search(r"60 subnets of 1 dataset\(s\): \d+ new", out), out
    md5 = md5_file(ckpt)
    counts = _versions(mlflow_server.uri, md5)
    assert len(counts) == len(table) and (counts == 1).all()
    assert set(counts.index) == {subnet_name("procs", a) for a in table.arch_id}
    reg = Registry(mlflow_server.uri)
    assert len(reg.search_versions(f"name = '{supernet_name('procs')}'")) == 1
    assert len(reg.search_versions(f"name = '{dataset_name('procs')}'")) == 1
