"""The registry at the end of the toy project's `dvc repro` (`toy_project`), as its users meet it: every
entry by name, its signature, card and lineage, loading from another folder, serving, exporting, and a
zoo pulled into a fresh clone."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_cli
from toy_project import HOLDOUT, ZOO

pytestmark = pytest.mark.usefixtures("as_a_newcomer")


def test_registry_holds_the_zoo_and_the_selection(project):
    root, _ = project
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    names = {m.name for m in client.search_registered_models(max_results=1000)}
    for name in ZOO:
        assert sum(n.startswith(f"mednns.{name}.") for n in names) >= 6
    assert f"mednns.selected.{HOLDOUT}" in names
    listed = run_cli("zoo", "list", "--dataset", "toya", cwd=root)
    assert listed.returncode == 0, listed.stderr


def _registered_subnets(root):
    from registry.client import Registry

    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, [v for v in Registry(uri).search_versions("tags.kind = 'subnet'")]


def test_every_registered_subnet_loads_by_name_and_scores_its_tags_exactly(project):
    """Loaded by name (`load_model`, or MLflow's pyfunc with no extra argument), a subnet is the network
    the zoo scored: on the zoo's very val images it gets its zoo row's accuracy exactly."""
    root, _ = project
    import mlflow

    from mednns import npz_layout
    from mednns.data import load_prepared
    from mednns.train.metrics import evaluate_scores
    from mednns.zoo import ZooConfig
    from registry import load_model

    params = yaml.safe_load((root / "params.yaml").read_text())
    cfg = ZooConfig(**params["zoo"])
    uri, versions = _registered_subnets(root)
    assert len(versions) == 6 * len(ZOO)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    zoo = pd.concat([pd.read_parquet(root / f"zoo/{d}.parquet") for d in ZOO])
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for v in versions:
            dataset, arch_id = v.tags["dataset"], v.tags["arch_id"]
            row = zoo[(zoo.source_dataset == dataset) & (zoo.target_dataset == dataset) & (zoo.arch_id == arch_id)]
            ds = load_prepared(root / f"data/prepared/{dataset}")
            idx = cfg.own_subsets(ds.spec.splits)["val"]
            images, labels = ds.images("val")[idx], ds.labels("val")[idx]
            assert int(v.tags["eval_images"]) == len(idx)
            net = load_model(f"{v.name}/{v.version}", uri=uri)
            from_name = evaluate_scores(labels, _predict(net, images), ds.spec.task)["acc"]
            pyfunc = mlflow.pyfunc.load_model(f"models:/{v.name}/{v.version}")
            from_pyfunc = evaluate_scores(labels, pyfunc.predict(npz_layout(images)), ds.spec.task)["acc"]
            assert from_name == from_pyfunc == row.val_acc.iloc[0], (v.name, from_name, from_pyfunc)
            assert float(v.tags["val_acc"]) == pytest.approx(row.val_acc.iloc[0], rel=1e-5)
            assert net.cfg.source == dataset and net.cfg.arch_id == arch_id and net.cfg.recalibration


def _predict(net, images):
    from mednns import predict

    return predict(net, images, channels=net.cfg.in_channels, size=net.cfg.image_size, channels_last=True)


def test_any_registered_subnet_exports_to_onnx(project, tmp_path):
    root, data_dir = project
    from mednns.data import load_dataset
    from mednns.selector.export import onnx_predict
    from registry import load_model

    out = tmp_path / "champion.onnx"
    result = run_cli("export", "mednns.toya@champion", str(out), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    ds = load_dataset(str(data_dir / "toya.npz"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    net = load_model("mednns.toya@champion", repo=root, uri=uri)
    np.testing.assert_allclose(onnx_predict(out, ds.images("test")), _predict(net, ds.images("test")).numpy(),
                               atol=1e-4)
    entry = run_cli("export", "mednns.metaspace@champion", str(tmp_path / "x.onnx"), cwd=root)
    assert entry.returncode == 1 and "only subnets" in entry.stderr


def _client(root):
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri, mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_every_entry_has_a_signature_a_card_and_the_run_that_made_it(project):
    root, _ = project
    import mlflow

    uri, client = _client(root)
    zoo = pd.concat([pd.read_parquet(root / f"zoo/{d}.parquet") for d in ZOO])
    for name, kw in ZOO.items():
        classes, channels = kw["classes"], kw.get("channels", 1)
        champ = client.get_model_version_by_alias(f"mednns.{name}", "champion")
        info = mlflow.models.get_model_info(f"models:/mednns.{name}/{champ.version}")
        (inp,), (out,) = info.signature.inputs.inputs, info.signature.outputs.inputs
        assert inp.type == np.dtype("uint8") and inp.shape == ((-1, 16, 16) if channels == 1 else (-1, 16, 16, 3))
        assert out.type == np.dtype("float32") and out.shape == (-1, classes)
        assert info.metadata["class_names"] == [str(i) for i in range(classes)]
        assert info.saved_input_example_info is not None
        # lineage: the supernet's training run, found by the checkpoint's md5, with its params and metrics
        run = client.get_run(champ.run_id)
        assert client.get_experiment(run.info.experiment_id).name == "supernets"
        assert run.data.tags["checkpoint_md5"] == champ.tags["checkpoint_md5"]
        assert run.data.params["epochs"] == "2" and any(k.startswith("final_") for k in run.data.metrics)
        # the champion's card: what it beat, its scores, and how to load exactly this version
        own = zoo[(zoo.source_dataset == name) & (zoo.target_dataset == name)]
        ranked = own.sort_values(["val_acc", "arch_id"], ascending=[False, True])
        assert ranked.arch_id.iloc[0] == champ.tags["arch_id"]
        card = champ.description
        assert f"runner-up `{ranked.arch_id.iloc[1]}`: val accuracy {ranked.val_acc.iloc[1]:.4f}" in card
        assert f'models:/mednns.{name}/{champ.version}' in card and f"| val | {ranked.val_acc.iloc[0]:.4f} |" in card
        # a subnet's card: source supernet, arch, size, latency, scoring, scores, the load lines
        row = own.iloc[0]
        (v,) = client.search_model_versions(f"name = 'mednns.{name}.{row.arch_id}' AND "
                                            f"tags.checkpoint_md5 = '{champ.tags['checkpoint_md5']}'")
        assert v.run_id == champ.run_id and v.source == champ.source  # one artifact per checkpoint
        for text in (f"**{name}** supernet", v.tags["checkpoint_md5"][:8], row.arch_json, f"{int(row.params):,}",
                     f"{row.latency_ms:.2f} ms", f"on {int(row.eval_images)} images per own split",
                     f"| test | {row.test_acc:.4f} | {row.test_auc:.4f} |",
                     f'mlflow.pyfunc.load_model("models:/mednns.{name}.{row.arch_id}/{v.version}")'):
            assert text in v.description, text
        supernet = client.get_model_version_by_alias(f"mednns.{name}.supernet", "current")
        assert "Weight-sharing supernet trained on" in supernet.description and supernet.run_id == champ.run_id

    ms = client.get_model_version_by_alias("mednns.metaspace", "champion")
    info = mlflow.models.get_model_info(f"models:/mednns.metaspace/{ms.version}")
    assert info.signature.inputs.inputs[0].shape == (-1, -1, -1, -1) and info.signature.params is not None
    assert f"models:/mednns.metaspace/{ms.version}" in ms.description

    # the selected model: the selector's whole card, on the version and the model, and the selection run
    sel = client.get_model_version_by_alias(f"mednns.selected.{HOLDOUT}", "latest-selection")
    written = (root / f"selection/{HOLDOUT}.md").read_text()
    # the file on disk also names the entry it got, which the card registered with it could not know yet
    registered_line = f"Registered in MLflow as `models:/mednns.selected.{HOLDOUT}/{sel.version}`."
    assert written.rstrip().endswith(registered_line) and "## Data licence" in written
    assert sel.description.startswith(written.rstrip()[:-len(registered_line)].rstrip())
    assert f"models:/mednns.selected.{HOLDOUT}/{sel.version}" in sel.description
    assert client.get_registered_model(f"mednns.selected.{HOLDOUT}").description == sel.description
    run = client.get_run(sel.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "selections" and "test_acc" in run.data.metrics
    info = mlflow.models.get_model_info(f"models:/mednns.selected.{HOLDOUT}/{sel.version}")
    assert info.signature.inputs.inputs[0].shape == (-1, 16, 16) and info.metadata["class_names"] == ["0", "1"]


@pytest.fixture(scope="module")
def served_registry(project, tmp_path_factory):
    """The project's zoo and meta-space registered by the real CLI into an `mlflow server` of their own,
    whose artifacts clients reach only through it."""
    from servers import MlflowServer

    root, _ = project
    server = MlflowServer(tmp_path_factory.mktemp("e2e-server"), workers=2).start()
    try:
        out = run_cli("registry", "sync", "--metaspace", "models/metaspace", cwd=root,
                      env={"MLFLOW_TRACKING_URI": server.uri})
        assert out.returncode == 0, out.stderr[-3000:]
        yield server
    finally:
        server.stop()


LOAD_ANYWHERE = """
import json, sys
import numpy as np
import mlflow
from mednns import predict
from registry import load_model

data, out = np.load(sys.argv[1]), {}
for ds in sys.argv[2:]:
    model = mlflow.pyfunc.load_model(f"models:/mednns.{ds}@champion")
    net = load_model(f"mednns.{ds}@champion")
    images = data[ds]
    out[ds] = {"pyfunc": model.predict(images).tolist(),
               "torch": predict(net, images, channels=net.cfg.in_channels, size=net.cfg.image_size,
                                channels_last=True).tolist()}
ranked = mlflow.pyfunc.load_model("models:/mednns.metaspace@champion").predict(data["query"], params={"k": 3})
out["metaspace"] = ranked[["source_dataset", "arch_id"]].values.tolist()
print(json.dumps(out))
"""


def test_a_new_folder_with_only_the_tracking_uri_loads_the_champions_and_the_metaspace(project, served_registry,
                                                                                        tmp_path):
    """Done when: a fresh process in an empty folder, given only MLFLOW_TRACKING_URI, loads
    `models:/mednns.<ds>@champion` and the meta-space and predicts; each champion's accuracy on the
    images the zoo scored equals its tag."""
    import os
    import sys

    from mednns import MetaSpace, npz_layout
    from mednns.data import load_prepared
    from mednns.train.metrics import evaluate_scores
    from mednns.zoo import ZooConfig
    from registry.client import Registry

    root, data_dir = project
    cfg = ZooConfig(**yaml.safe_load((root / "params.yaml").read_text())["zoo"])
    work = tmp_path / "elsewhere"
    work.mkdir()
    scored, arrays = {}, {}
    for name in ZOO:
        ds = load_prepared(root / f"data/prepared/{name}")
        idx = cfg.own_subsets(ds.spec.splits)["val"]
        arrays[name] = npz_layout(ds.images("val")[idx])  # images only: the weights come from the registry
        scored[name] = (ds.labels("val")[idx], ds.spec.task)
    query = np.load(data_dir / f"{HOLDOUT}.npz")["train_images"][..., None]
    np.savez(tmp_path / "inputs.npz", query=query, **arrays)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "MEDNNS_CACHE": str(tmp_path / "cache"),
           "MLFLOW_TRACKING_URI": served_registry.uri}
    script = tmp_path / "load.py"
    script.write_text(LOAD_ANYWHERE)
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "inputs.npz"), *ZOO], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    reg = Registry(served_registry.uri)
    for name in ZOO:
        champ = reg.client.get_model_version_by_alias(f"mednns.{name}", "champion")
        labels, task = scored[name]
        acc = evaluate_scores(labels, np.asarray(out[name]["pyfunc"], dtype=np.float32), task)["acc"]
        assert acc == evaluate_scores(labels, np.asarray(out[name]["torch"], dtype=np.float32), task)["acc"]
        assert acc == pytest.approx(float(champ.tags["val_acc"]), abs=1e-6), name
    expected = MetaSpace.load(root / "models/metaspace").query(query, k=3)
    assert out["metaspace"] == expected[["source_dataset", "arch_id"]].values.tolist()
    assert not list(work.iterdir())  # it wrote nothing where it ran
    assert any((tmp_path / "cache").rglob("*"))  # what it downloaded is in the md5-keyed cache


def test_mlflow_models_serve_answers_like_the_library(project, served_registry, tmp_path):
    """A selected model (ONNX) and a zoo subnet (the pyfunc loader) behind `mlflow models serve`, asked by
    a real HTTP request with uint8 images as the npz stores them."""
    from mednns import npz_layout, predict
    from mednns.data import load_prepared
    from mednns.selector.export import onnx_predict
    from registry import load_model
    from servers import ModelServer

    root, data_dir = project
    uri, client = _client(root)
    sel = client.get_model_version_by_alias(f"mednns.selected.{HOLDOUT}", "latest-selection")
    servers = [ModelServer(f"models:/mednns.selected.{HOLDOUT}/{sel.version}", uri, tmp_path).start(),
               ModelServer("models:/mednns.toyb@champion", served_registry.uri, tmp_path).start()]
    try:
        for s in servers:
            s.wait()
        raw = np.load(data_dir / f"{HOLDOUT}.npz")["test_images"]
        np.testing.assert_allclose(servers[0].predict(raw[:8]), onnx_predict(root / f"selection/{HOLDOUT}.onnx", raw[:8]),
                                   atol=1e-5)
        images = npz_layout(load_prepared(root / "data/prepared/toyb").images("val")[:8])
        net = load_model("mednns.toyb@champion", uri=served_registry.uri)
        ref = predict(net, images, channels=net.cfg.in_channels, size=net.cfg.image_size, channels_last=True).numpy()
        np.testing.assert_allclose(servers[1].predict(images), ref, atol=1e-4)
    finally:
        for s in servers:
            s.stop()


def test_zoo_pull_in_a_fresh_clone_is_all_select_and_export_need(project, s3_server, tmp_path):
    import os
    import shutil

    import boto3

    from registry.artifacts import md5_file

    root, data_dir = project
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="e2e-zoo")
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    shutil.copytree(root, a, symlinks=True)
    (a / ".gitignore").write_text("/mlflow.db\n/mlruns/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    out = run_cli("remote", "add", "s3://e2e-zoo/store", "--endpoint-url", s3_server, cwd=a, env=creds)
    assert out.returncode == 0, out.stderr
    for cmd in (["add", "-A"], ["commit", "-qm", "toy zoo"]):
        subprocess.run([*git, *cmd], cwd=a, check=True)
    pushed = subprocess.run(["dvc", "push"], cwd=a, capture_output=True, text=True, env={**os.environ, **creds})
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)

    pulled = run_cli("zoo", "pull", "--json", cwd=b, env=creds)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    report = json.loads(pulled.stdout)
    assert not report["missing"] and "models/metaspace" in report["outputs"]
    assert {f"zoo/{d}.bn.pt" for d in ZOO} | {f"models/supernets/{d}.pt" for d in ZOO} <= set(report["outputs"])
    on_disk = [p for o in report["outputs"] for p in ([b / o] if (b / o).is_file() else (b / o).rglob("*"))
               if p.is_file()]
    assert report["files"] == len(on_disk) and report["bytes"] == sum(p.stat().st_size for p in on_disk)
    contents = {md5_file(p): p.stat().st_size for p in on_disk}  # a fresh clone: every distinct file came
    assert report["fetched"] == len(contents) and report["fetched_bytes"] == sum(contents.values())

    out = tmp_path / "picked.onnx"
    chosen = run_cli("select", str(data_dir / f"{HOLDOUT}.npz"), "--k", "2", "--finetune-epochs", "0", "--export",
                     str(out), "--no-register", "--zoo-only", cwd=b)
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    assert "efficientnet_lite0" not in chosen.stdout
    exported = run_cli("export", "mednns.toya@champion", str(tmp_path / "champion.onnx"), cwd=b,
                       env={"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})
    assert exported.returncode == 0, exported.stderr[-3000:]
    again = run_cli("zoo", "pull", cwd=b, env=creds)
    assert again.returncode == 0 and "downloaded 0 file(s), 0.0 MB" in again.stdout, again.stdout
