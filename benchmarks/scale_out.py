"""Scale-out on this machine: zoo subnets/s in process vs Ray with 1 and 2 workers, and supernet training
images/s with 1 and 2 data-parallel (torchrun, gloo) processes.

Run: `MEDNNS_DATA_DIR=../shared/medmnist python -m benchmarks.scale_out [--subnets 24] [--train-images 1500]`.

Zoo: PneumoniaMNIST's supernet (freshly initialised and saved: the speed of a pass does not depend on the
weights), the demo's scoring settings (`params.yaml: zoo`), BreastMNIST as the transfer target, the
zoo's share of probed subnets. One Ray worker is a single-threaded process (Ray sets OMP_NUM_THREADS to
a task's CPUs), so Ray's overhead is judged against the in-process build at one thread; the in-process
build at the machine's threads is the baseline of the speed-up. Ray's start and each worker's first
import are one-time costs, timed apart; the builds are timed on warm workers. Every Ray build is checked
against the in-process table (latency_ms aside, a timing).

DDP: the same supernet trained on PneumoniaMNIST for 2 epochs (1 largest-only, 1 sandwich), batch 128,
the same images and archs for 1 process (one thread, then all threads) and 2 processes (one thread
each); images/s of each epoch's training and the final accuracies (after BatchNorm recalibration) at
the same images seen.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch
import yaml

from benchmarks.common import print_table
from mednns.data import load_dataset
from mednns.nn.checkpoint import save_supernet
from mednns.nn.space import SearchSpace
from mednns.nn.supernet import Supernet
from mednns.utils import parallel
from mednns.utils.config import from_section
from mednns.utils.parallel import ensure_ray
from mednns.zoo import ZooConfig, build_zoo
from mednns.zoo import build as zoo_build

SOURCE, TARGET = "pneumoniamnist", "breastmnist"
SCORES = ["val_acc", "val_auc", "test_acc", "test_auc", "transfer_acc", "transfer_auc", "params", "macs"]


def _max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    a, b = a.set_index(["arch_id", "target_dataset"]).sort_index(), b.set_index(["arch_id", "target_dataset"]).sort_index()
    assert a.index.equals(b.index), "the Ray zoo has other rows than the in-process one"
    return float(np.nanmax(np.abs(a[SCORES].to_numpy(float) - b[SCORES].to_numpy(float))))


def zoo_rows(subnets: int, work: Path) -> list[dict]:
    params = yaml.safe_load(Path("params.yaml").read_text())
    cfg = from_section(ZooConfig, params["zoo"], "zoo")
    cfg = replace(cfg, num_archs=subnets, shard_size=max(1, subnets // 6),
                  transfer_per_dataset=max(2, round(subnets * cfg.transfer_per_dataset / cfg.num_archs)))
    source, target = load_dataset(SOURCE, download=False), load_dataset(TARGET, download=False)
    torch.manual_seed(0)
    spec = source.spec
    ckpt = work / f"{SOURCE}.pt"
    save_supernet(ckpt, Supernet(SearchSpace(), spec.channels, spec.num_classes, spec.image_size), spec, {})

    rows, tables = [], {}
    threads = torch.get_num_threads()

    def _warm(_):  # local: Ray ships it by value; a worker's first import of torch and the library
        import mednns.zoo.build  # noqa: F401
        return os.getpid()

    def build(name: str, workers: int, torch_threads: int, on_ray: bool = False) -> None:
        torch.set_num_threads(torch_threads)
        out = work / name / f"{SOURCE}.parquet"
        # workers: 1 never starts Ray; to time Ray's own overhead, its single worker goes through Ray here.
        engine = functools.partial(parallel._run_tasks, ray=on_ray or workers > 1)
        t0 = time.perf_counter()
        with mock.patch.object(zoo_build, "run_tasks", engine):
            tables[name] = build_zoo(ckpt, source, [target], out, replace(cfg, workers=workers))
        seconds = time.perf_counter() - t0
        rows.append({"build": name, "workers": workers, "threads each": torch_threads, "seconds": seconds,
                     "subnets/s": subnets / seconds})

    build("in process, 1 thread", 1, 1)
    build(f"in process, {threads} threads", 1, threads)
    torch.set_num_threads(threads)
    for workers in (1, 2):
        t0 = time.perf_counter()
        ensure_ray(workers)
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        parallel._run_tasks(_warm, range(workers), workers, progress=False, ray=True)
        t_warm = time.perf_counter() - t0
        build(f"Ray, {workers} worker{'s' * (workers > 1)}", workers, 1, on_ray=True)
        rows[-1].update({"ray start s": t_init, "worker warm-up s": t_warm})
    base1, base_all = rows[0]["subnets/s"], rows[1]["subnets/s"]
    for r in rows:
        r.setdefault("ray start s", "")
        r.setdefault("worker warm-up s", "")
        r["vs in process, 1 thread"] = r["subnets/s"] / base1
        r[f"vs in process, {threads} threads"] = r["subnets/s"] / base_all
        r["max score diff vs 1 thread"] = _max_diff(tables[r["build"]], tables["in process, 1 thread"])
    return rows


# -- DDP --------------------------------------------------------------------------------------
def ddp_worker(out: str, train_images: int) -> None:
    """One run (under torchrun or alone): train, then write the summary as JSON."""
    from mednns.train import distributed
    from mednns.train.supernet import SupernetConfig, SupernetTrainer

    ds = load_dataset(SOURCE, download=False)
    with distributed.process_group("cpu") as ranks:
        cfg = SupernetConfig(epochs=2, warmup_epochs=1, max_train_per_epoch=train_images, recalib_images=500,
                             nproc=ranks.world)
        summary = SupernetTrainer(ds, cfg).fit(Path(out).with_suffix(".pt"))
        if ranks.main:
            Path(out).write_text(json.dumps(summary))


def ddp_rows(train_images: int, work: Path) -> list[dict]:
    rows = []
    threads = os.cpu_count() or 1
    for nproc, each in ((1, 1), (1, threads), (2, 1)):
        out = work / f"ddp{nproc}-{each}.json"
        me = ["-m", "benchmarks.scale_out", "--ddp-worker", str(out), "--train-images", str(train_images)]
        cmd = ([sys.executable, *me] if nproc == 1 else
               [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *me])
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(each)})
        s = json.loads(out.read_text())
        h, f = s["history"], s["final"]
        rows.append({"processes": nproc, "threads each": each,
                     "images/s, largest only (epoch 1)": h[0]["train_images_per_s"],
                     "images/s, sandwich (epoch 2)": h[1]["train_images_per_s"],
                     "test acc largest": f["test_acc_largest"], "median": f["test_acc_median"],
                     "smallest": f["test_acc_smallest"], "images seen": 2 * train_images})
    for r in rows:
        r["sandwich vs 1 process, 1 thread"] = r["images/s, sandwich (epoch 2)"] / rows[0]["images/s, sandwich (epoch 2)"]
        r[f"vs 1 process, {threads} threads"] = r["images/s, sandwich (epoch 2)"] / rows[1]["images/s, sandwich (epoch 2)"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subnets", type=int, default=24)
    parser.add_argument("--train-images", type=int, default=1500, help="images per epoch of the DDP runs")
    parser.add_argument("--part", choices=("all", "zoo", "ddp"), default="all")
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker, args.train_images)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
        if args.part in ("all", "zoo"):
            rows = zoo_rows(args.subnets, work)
            print_table(f"Zoo build, {SOURCE} supernet, demo scoring settings, {args.subnets} subnets "
                        f"(transfer to {TARGET}), {os.cpu_count()} cores", rows)
            import ray

            ray.shutdown()  # its processes would share the cores with the training runs
            ray1 = next(r for r in rows if r["build"] == "Ray, 1 worker")
            print(f"\nRay overhead at 1 worker (warm): {1 / ray1['vs in process, 1 thread'] - 1:+.1%} time per "
                  "subnet against the in-process build at one thread (target <= 10%)")
        if args.part in ("all", "ddp"):
            print_table(f"Supernet training on {SOURCE}, batch 128, {args.train_images} images per epoch, gloo",
                        ddp_rows(args.train_images, work))
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
