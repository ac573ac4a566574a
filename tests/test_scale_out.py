"""Scale-out on real engines: a local Ray gives the in-process results (a killed worker included), and
torchrun trains a supernet data-parallel that resumes exactly and writes one safe checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, synthetic_arrays, tiny_config, tiny_dataset, write_npz
from mednns.utils.errors import MedNNSError
from mednns.utils.parallel import run_tasks
from mednns.zoo import ZooConfig, build_zoo

TESTS = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def _stop_ray_after_this_module():
    yield
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory):
    from mednns.train.supernet import SupernetTrainer

    path = tmp_path_factory.mktemp("scale") / "toy.pt"
    SupernetTrainer(tiny_dataset(name="toy"), tiny_config(epochs=2)).fit(path)
    return path


def zoo_config(**kw) -> ZooConfig:
    base = dict(num_archs=12, transfer_per_dataset=4, shard_size=2, recalib_images=64, recalib_batch=16,
                eval_batch=64, max_eval_images=0, probe_train_images=64, probe_val_images=32,
                probe_input_images=4, latency_runs=2)
    return ZooConfig(**{**base, **kw})


def datasets():
    return tiny_dataset(name="toy"), tiny_dataset(task="multi-label", classes=3, channels=3, name="other", seed=1)


def assert_same_zoo(got_dir: Path, want_dir: Path) -> None:
    """Same rows, same scores, same BatchNorm statistics, bit for bit (latency is a timing)."""
    got, want = (pd.read_parquet(d / "toy.parquet").drop(columns="latency_ms") for d in (got_dir, want_dir))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    got_bn, want_bn = (torch.load(d / "toy.bn.pt", weights_only=True)["stats"] for d in (got_dir, want_dir))
    assert got_bn.keys() == want_bn.keys()
    for arch_id in want_bn:
        assert torch.equal(got_bn[arch_id]["mean"], want_bn[arch_id]["mean"])
        assert torch.equal(got_bn[arch_id]["var"], want_bn[arch_id]["var"])


@contextmanager
def threads_of_a_ray_worker():
    """A Ray worker of one CPU computes with one thread; a sum over another number of threads can round
    its last float32 bit differently, so the in-process reference uses one too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def in_process_zoo(tiny_supernet, tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo-in-process")
    source, target = datasets()
    with threads_of_a_ray_worker():
        build_zoo(tiny_supernet, source, [target], out / "toy.parquet", zoo_config())
    return out


# -- the fan-out --------------------------------------------------------------------------------
def test_ray_tasks_come_back_in_order_and_survive_a_killed_worker(tmp_path):
    def _square_or_die(args):  # local, so Ray ships it by value (workers cannot import this test module)
        x, marker = args
        if x == 2 and not Path(marker).exists():  # its worker process dies the first time it gets item 2
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if x == 5:
            raise MedNNSError("item 5 is bad")
        return x * x

    marker = tmp_path / "killed"
    seen = []
    out = run_tasks(_square_or_die, [(x, str(marker)) for x in range(5)], workers=2,
                    on_result=lambda i, r: seen.append(i) or -r)
    assert marker.exists(), "the worker was never killed"
    assert out == [-x * x for x in range(5)]      # on_result's value is kept, in the order of the items
    assert sorted(seen) == list(range(5))         # each item reported once, the killed one included
    with pytest.raises(MedNNSError, match="item 5 is bad"):
        run_tasks(_square_or_die, [(x, str(marker)) for x in range(3, 7)], workers=2)


# -- the zoo --------------------------------------------------------------------------------------
def test_a_two_worker_ray_zoo_is_the_in_process_zoo(tiny_supernet, in_process_zoo, tmp_path):
    source, target = datasets()
    build_zoo(tiny_supernet, source, [target], tmp_path / "toy.parquet", zoo_config(workers=2))
    assert_same_zoo(tmp_path, in_process_zoo)
    assert not (tmp_path / ".build").exists() or not any((tmp_path / ".build").iterdir())


def _kill_first_shard_task(stop: threading.Event, killed: list) -> None:
    """SIGKILL the first Ray worker of this test process seen running a task (`ray::_call`)."""
    import psutil

    me = psutil.Process()
    while not stop.is_set() and not killed:
        for p in me.children(recursive=True):
            try:
                if " ".join(p.cmdline()).startswith("ray::_call"):
                    p.kill()
                    killed.append(p.pid)
                    break
            except psutil.Error:
                continue
        time.sleep(0.01)


def test_a_worker_killed_mid_build_changes_nothing(tiny_supernet, in_process_zoo, tmp_path):
    source, target = datasets()
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_shard_task, args=(stop, killed), daemon=True)
    killer.start()
    try:
        table = build_zoo(tiny_supernet, source, [target], tmp_path / "toy.parquet", zoo_config(workers=2))
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed: the build finished before the killer saw a task"
    own = table[table.target_dataset == "toy"]
    assert len(own) == 12 and own.arch_id.is_unique   # every arch scored exactly once
    assert_same_zoo(tmp_path, in_process_zoo)


class Interrupt(Exception):
    pass


def test_an_interrupted_build_resumes_on_ray_from_its_shards(tiny_supernet, in_process_zoo, tmp_path, monkeypatch):
    """Shards written in process are reused by a Ray build (scheduling knobs are not in the shard key)."""
    import mednns.zoo.build as build

    source, target = datasets()
    calls = []

    def stop_after_two(i, result):
        calls.append(i)
        if len(calls) == 2:
            raise Interrupt

    original = build.run_tasks
    monkeypatch.setattr(build, "run_tasks", lambda *a, **kw: original(
        *a, **{**kw, "on_result": _chain(kw["on_result"], stop_after_two)}))
    with pytest.raises(Interrupt), threads_of_a_ray_worker():
        build_zoo(tiny_supernet, source, [target], tmp_path / "toy.parquet", zoo_config())
    monkeypatch.undo()
    shards = list((tmp_path / ".build").rglob("shard-*.parquet"))
    assert len(shards) == 2
    build_zoo(tiny_supernet, source, [target], tmp_path / "toy.parquet", zoo_config(workers=2))
    assert_same_zoo(tmp_path, in_process_zoo)


def _chain(first, then):
    def both(i, result):
        out = first(i, result)
        then(i, result)
        return out
    return both


# -- the evaluation's LogME passes ----------------------------------------------------------------
def test_logme_on_ray_workers_gives_the_in_process_scores(tiny_supernet, in_process_zoo):
    from mednns.metaspace.loo import SubnetFeatures, TrainSplit, logme_scores
    from mednns.zoo.store import BNStats, SubnetStore, bn_stats_path

    zoo = pd.read_parquet(in_process_zoo / "toy.parquet")
    cands = zoo[zoo.target_dataset == "toy"].reset_index(drop=True)
    _, other = datasets()
    split = TrainSplit(other.images("train"), other.labels("train"), other.spec.task, other.spec.num_classes)
    store_dir = tiny_supernet.parent

    def features():
        return SubnetFeatures(SubnetStore(store_dir), lambda s: BNStats.load(bn_stats_path(in_process_zoo / "toy.parquet")),
                              batch=16)

    candidates = {"other": cands, "again": cands.iloc[::2].reset_index(drop=True)}
    with threads_of_a_ray_worker():
        here = logme_scores(candidates, lambda d: split, features(), n_images=40, seed=0, progress=False)
    there = logme_scores(candidates, lambda d: split, features(), n_images=40, seed=0, progress=False, workers=2)
    assert here.keys() == there.keys()
    for d in here:
        assert np.isfinite(here[d]).all()
        np.testing.assert_array_equal(there[d], here[d])


# -- the supernet under torchrun ------------------------------------------------------------------
def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(TESTS / "ddp_script.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_gloo_processes_train_a_supernet_that_resumes_exactly(tmp_path):
    from mednns.nn.checkpoint import load_supernet, read_checkpoint

    full = _torchrun(2, str(tmp_path / "a.pt"), "2")
    assert full.returncode == 0, full.stderr[-2000:]
    payload = torch.load(tmp_path / "a.pt", map_location="cpu", weights_only=True)
    assert payload["summary"]["world_size"] == 2 and payload["summary"]["config"]["nproc"] == 2
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["world"] == 2 and result["test_acc_largest"] >= 0.6  # as the 1-process run; chance 0.25
    load_supernet(tmp_path / "a.pt")

    stopped = _torchrun(2, str(tmp_path / "b.pt"), "2", "1")      # rank 0 dies after epoch 1
    assert stopped.returncode != 0 and (tmp_path / "b.resume.pt").exists() and not (tmp_path / "b.pt").exists()
    resumed = _torchrun(2, str(tmp_path / "b.pt"), "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "b.json").read_text())["resumed_from_epoch"] == 1
    a, b = (read_checkpoint(tmp_path / f"{n}.pt")["state_dict"] for n in "ab")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_the_stage_launches_torchrun_itself_and_rank_0_alone_tracks(tmp_path):
    from mednns.data import prepare

    arrays = synthetic_arrays(size=16, sizes={"train": 96, "val": 32, "test": 32})
    prepare(str(write_npz(tmp_path / "src" / "toy.npz", arrays)), tmp_path / "data" / "toy")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["supernet"].update(tiny_config(epochs=2, nproc=2).__dict__)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([sys.executable, "-m", "pipelines.train_supernet", "data/toy", "models/toy.pt",
                          "metrics/toy.json"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.load(tmp_path / "models" / "toy.pt", weights_only=True)["summary"]["world_size"] == 2
    assert "test_acc_largest" in json.loads((tmp_path / "metrics" / "toy.json").read_text())
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["supernets"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["nproc"] == "2" and "val_acc_largest" in runs[0].data.metrics


# -- the GPU machine's library: no MLOps packages -------------------------------------------------
BLOCKED = ("mlflow", "dvc", "ray", "medmnist")
_NO_MLOPS = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked: the GPU machine does not have it")
sys.meta_path.insert(0, Blocker())
sys.path.insert(0, {str(TESTS)!r})
import importlib, pkgutil, mednns.nn, mednns.train
for pkg in (mednns.nn, mednns.train):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
import mednns.zoo.build, mednns.zoo.scoring, mednns.zoo.store, mednns.utils.parallel
from conftest import tiny_config, tiny_dataset
from mednns.train.supernet import SupernetTrainer
from mednns.zoo import ZooConfig, build_zoo
ds = tiny_dataset(name="toy")
SupernetTrainer(ds, tiny_config(epochs=1)).fit(sys.argv[1] + "/toy.pt")
table = build_zoo(sys.argv[1] + "/toy.pt", ds, [], sys.argv[1] + "/toy.parquet",
                  ZooConfig(num_archs=3, transfer_per_dataset=0, recalib_images=32, max_eval_images=0, latency_runs=1))
assert not any(m.split(".")[0] in {BLOCKED!r} for m in sys.modules)
print(len(table), table.val_acc.notna().all())
"""


def test_training_and_scoring_need_none_of_the_mlops_packages(tmp_path):
    out = subprocess.run([sys.executable, "-c", _NO_MLOPS, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["3", "True"]
