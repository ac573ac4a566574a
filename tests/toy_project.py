"""The toy project of the end-to-end tests: three tiny synthetic zoo datasets and one held out, and
params.yaml cut to toy sizes, run through the real `dvc repro` once per session (conftest's `project`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TINY_SPACE, new_project, synthetic_arrays, write_npz

SIZES = {"train": 96, "val": 32, "test": 32}
ZOO = {"toya": dict(classes=3), "toyb": dict(classes=4, channels=3), "toyc": dict(classes=2)}
HOLDOUT = "toyh"


def dvc(root, *args):
    return subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, timeout=900)


def toy_params(params: dict, datasets=tuple(ZOO), holdout: str = HOLDOUT) -> dict:
    """Toy sizes for every knob that sets how much work a stage does; everything else as given."""
    datasets = list(datasets)  # a tuple of names or a {name: shape} dict
    params["datasets"] = datasets
    params["supernet"].update(epochs=2, warmup_epochs=1, batch_size=32, lr=0.05, max_train_per_epoch=0,
                              recalib_images=64, eval_batch_size=64, space=TINY_SPACE)
    params["zoo"].update(num_archs=6, transfer_per_dataset=3, recalib_images=32, recalib_batch=16, eval_batch=64,
                         max_eval_images=20, probe_train_images=48, probe_val_images=24, probe_input_images=4,
                         latency_runs=2, shard_size=3)
    params["continual"].update(image_size=32, steps=4, batch_size=8, eval_images=16)
    params["continual_resnet18"].update(steps=4, batch_size=8, eval_images=16)
    params["features"].update(sample_images=64, batch_size=64)
    params["metaspace"].update(steps=20, set_min=8, set_max=16, rows_per_dataset=6, top_models=2,
                               query_images=64, log_every=5)
    params["evaluate"].update(max_candidates=10, logme_images=48)
    # The zoo alone, so that the stages' pick has a supernet's lineage to check (the CLI test below runs
    # the default, with the ImageNet candidate).
    params["select"].update(dataset=holdout, k=2, convergence_epochs=1, pretrained=[], pretrained_size=32)
    params["finetune"].update(epochs=1, bn_images=32, head_images=48, recalib_images=32)
    # The stage's wiring, on one zoo dataset left out (its own zoo network trained without it) and the held-out
    # one; every method on every kind of target is tests/test_selection_benchmark.py's.
    params["benchmark"].update(targets=[datasets[0], holdout], seeds=[0], report_epochs=[1], train_images=[0],
                               max_train_images=48, max_val_images=24, max_test_images=32, logme_images=48,
                               efficientnet_size=32, k=2,
                               methods=["selector", "metaspace_top1", "resnet18_scratch", "efficientnet_zoo"])
    return params



def build(base: Path) -> tuple[Path, Path]:
    """A fresh checkout with toy params after one `dvc repro` of everything: (project root, data folder)."""
    data_dir = base / "medmnist"
    for i, (name, kw) in enumerate({**ZOO, HOLDOUT: dict(classes=2)}.items()):
        write_npz(data_dir / f"{name}.npz", synthetic_arrays(size=16, sizes=SIZES, seed=i, **kw))
    root = new_project(base / "project")
    (root / "params.yaml").write_text(yaml.safe_dump(toy_params(yaml.safe_load((root / "params.yaml").read_text()))))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDNNS_DATA_DIR", str(data_dir))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the embedded store, as a newcomer has it
        result = dvc(root, "repro")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return root, data_dir
