"""The whole flow at toy scale, as a newcomer runs it: the real `dvc repro` over every stage on three
tiny synthetic datasets (and a fourth held out of the zoo; `toy_project`), the embedded MLflow store, then
the real CLI. Checks the artefacts of each stage and the ONNX file against PyTorch; the registry's side is
tests/test_end_to_end_registry.py."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, new_project, run_cli, synthetic_arrays, write_npz
from toy_project import HOLDOUT, SIZES, ZOO, dvc, toy_params

pytestmark = pytest.mark.usefixtures("as_a_newcomer")

# toy sizes, on MedMNIST names whose tasks the demo never runs (multi-label, ordinal): a reason to fail on
# the first GPU run that a CPU could have caught fails here.
FULL = {"chestmnist": dict(task="multi-label", classes=14), "retinamnist": dict(classes=5, channels=3),
        "octmnist": dict(classes=4)}


def test_every_stage_runs_with_the_paper_scale_params_at_toy_size(tmp_path):
    data_dir = tmp_path / "medmnist"
    for i, (name, kw) in enumerate({**FULL, "breastmnist": dict(classes=2)}.items()):
        write_npz(data_dir / f"{name}.npz", synthetic_arrays(size=28, sizes=SIZES, seed=i, **kw))
    root = new_project(tmp_path / "project")
    full = yaml.safe_load((REPO / "params-full.yaml").read_text())
    assert full["supernet"]["device"] == "cuda"  # falls back to the CPU with a warning
    (root / "params.yaml").write_text(yaml.safe_dump(toy_params(full, FULL, "breastmnist")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNNS_DATA_DIR", str(data_dir))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = dvc(root, "repro")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert json.loads((root / "metrics/select.json").read_text())["source_supernet"] in FULL
    assert set(json.loads((root / "metrics/leave_one_out.json").read_text())["datasets"]) == set(FULL)


def test_an_ad_hoc_benchmark_run_refuses_an_unknown_target(project, tmp_path):
    """`--targets` runs outside DVC: a typo is one line naming it, not a silently smaller run."""
    import sys

    root, _ = project
    result = subprocess.run([sys.executable, "-m", "pipelines.selection_benchmark", f"data/holdout/{HOLDOUT}",
                             "--zoo", "zoo", "--features", "features", "--supernets", "models/supernets",
                             "--networks", "models/pretrained", "--data",
                             "data/prepared", "--out", str(tmp_path / "b"), "--plot", str(tmp_path / "b.png"),
                             "--targets", f"{HOLDOUT},bloodmnst"], cwd=root, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "bloodmnst" in result.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_an_ad_hoc_benchmark_run_changes_a_setting_without_editing_params_yaml(project, tmp_path):
    """`--set finetune.backbone_lr_scale=0.3` is the recipe that run used and says so in its results; a
    setting that does not exist is one line naming it, before any work."""
    import sys

    root, _ = project
    params_before = (root / "params.yaml").read_text()
    command = [sys.executable, "-m", "pipelines.selection_benchmark", f"data/holdout/{HOLDOUT}", "--zoo", "zoo",
               "--features", "features", "--supernets", "models/supernets", "--networks", "models/pretrained",
               "--data", "data/prepared", "--targets", HOLDOUT, "--methods", "resnet18_scratch"]
    bad = subprocess.run([*command, "--out", str(tmp_path / "bad"), "--plot", str(tmp_path / "bad.png"),
                          "--set", "finetune.backbone_lr=0.3"], cwd=root, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert "backbone_lr" in bad.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())
    good = subprocess.run([*command, "--out", str(tmp_path / "b"), "--plot", str(tmp_path / "b.png"),
                           "--set", "finetune.backbone_lr_scale=0.3", "--set", "benchmark.seeds=[1]"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr[-2000:]
    settings = json.loads((tmp_path / "b.json").read_text())["settings"]
    assert settings["finetune"]["backbone_lr_scale"] == 0.3 and settings["benchmark"]["seeds"] == [1]
    assert settings["changed"] == {"finetune": {"backbone_lr_scale": 0.3}, "benchmark": {"seeds": [1]}}
    rows = pd.read_csv(tmp_path / "b.csv")
    assert set(rows.method) == {"resnet18_scratch"} and set(rows.seed) == {1}
    assert (root / "params.yaml").read_text() == params_before


def test_every_stage_writes_its_artefacts(project):
    root, _ = project
    for name in ZOO:
        assert (root / f"models/supernets/{name}.pt").is_file()
        zoo = pd.read_parquet(root / f"zoo/{name}.parquet")
        own = zoo[zoo.target_dataset == name]
        assert len(own) == 6 and set(zoo.target_dataset) == set(ZOO)  # transfer rows on the others
        assert (root / f"zoo/{name}.bn.pt").is_file()  # the recalibrated statistics of its subnets
        assert (root / f"features/{name}.npz").is_file()
    fid = pd.read_csv(root / "metrics/fid.csv")
    assert set(fid["dataset"]) == set(ZOO)
    assert (root / "models/metaspace/weights.pt").is_file()
    evaluation = json.loads((root / "metrics/leave_one_out.json").read_text())
    assert set(evaluation["datasets"]) == set(ZOO)  # leave-one-dataset-out results for the zoo's datasets
    assert "|" in (root / "metrics/leave_one_out.md").read_text()
    selection = json.loads((root / "metrics/select.json").read_text())
    assert selection["dataset"] == HOLDOUT and selection["source_supernet"] in ZOO
    assert (root / f"selection/{HOLDOUT}.onnx").is_file() and (root / f"selection/{HOLDOUT}.md").is_file()
    curves = pd.read_csv(root / "metrics/convergence.csv")
    assert list(curves.epoch) == [0, 1]
    assert {"selected", "same_arch_random_init", "resnet18_scratch"} <= set(curves.columns)


def test_a_second_repro_finds_everything_up_to_date(project):
    root, _ = project
    again = dvc(root, "repro")
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout[-3000:]
    assert "up to date" in dvc(root, "status").stdout


def test_the_onnx_file_agrees_with_what_the_stage_reported(project):
    root, data_dir = project
    from mednns.data import load_dataset
    from mednns.selector.export import onnx_predict
    from mednns.train.metrics import evaluate_scores

    ds = load_dataset(str(data_dir / f"{HOLDOUT}.npz"))
    raw = np.load(data_dir / f"{HOLDOUT}.npz")["test_images"]  # exactly as stored: (N, H, W) uint8
    logits = onnx_predict(root / f"selection/{HOLDOUT}.onnx", raw)
    selection = json.loads((root / "metrics/select.json").read_text())
    acc = evaluate_scores(ds.labels("test"), logits, ds.spec.task)["acc"]
    assert acc == pytest.approx(selection["onnx_test_acc"])
    assert abs(selection["onnx_test_acc"] - selection["test_acc"]) <= 1 / SIZES["test"]



def test_the_cli_selects_for_a_new_npz_and_fails_cleanly_on_bad_input(project, tmp_path):
    root, data_dir = project
    out = tmp_path / "model.onnx"
    ok = run_cli("select", str(data_dir / f"{HOLDOUT}.npz"), "--k", "2", "--finetune-epochs", "0", "--export",
                 str(out), "--no-register", "--pretrained-size", "32", cwd=root,
                 env={"COLUMNS": "200"})  # the table unwrapped
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert "imagenet" in ok.stdout and "efficientnet_lite0" in ok.stdout  # tried by default, beside the zoo
    too_small = run_cli("select", str(data_dir / f"{HOLDOUT}.npz"), "--max-params", "10", cwd=root)
    assert too_small.returncode == 1 and "Traceback" not in too_small.stderr
    assert len(too_small.stderr.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not an npz")
    bad = run_cli("select", str(corrupt), cwd=root)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and str(corrupt) in bad.stderr
