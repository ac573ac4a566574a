"""Registering a zoo in the MLflow model registry, and browsing it, against a local `mlflow server`.

Run: `python -m benchmarks.registry_register [--n 2000] [--naive 100] [--workers 8] [--growth 200,600]
[--compare]` (`--n 10000 --growth 1000,3000` for the 10^4 target: under 10 minutes on 2 cores). It starts
an `mlflow server` (SQLite, default 4 uvicorn workers, artifacts served over HTTP) in a temporary folder,
writes a random-weight supernet of the default (demo) search space and a synthetic zoo table of N distinct
archs, then times:

* naive: per subnet `create_registered_model` + `create_model_version` (MLflow's default wait for
  READY), one after the other, on the first `--naive` subnets: the in-run baseline;
* batch: `registry.models.ZooRegistrar` (one bulk existence search, a thread pool, no wait, one
  shared loader artifact holding the checkpoint and statistics, a card per version) on all N, in steps
  of the `--growth` sizes (each step a rebuilt zoo of the same checkpoint: the first rows again and new
  ones), with the loader artifact's size and upload time;
* re-run: the same sync again (nothing new to register);
* browsing at each size: `list_models(dataset, min_acc)` in-process, the real `mednns zoo list --dataset
  ... --min-acc 0.9` command, and a load by name in a fresh process in an empty folder with only the
  tracking URI (`registry.load_model` with an empty download cache, then from the cache, and
  `mlflow.pyfunc.load_model("models:/...")`), the baseline being the same at the smallest size.

With `--compare` it also registers the same N archs the other way (one registered model for the
dataset, a version per subnet) and times the queries a person browsing the zoo makes, both ways.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import print_table


def make_zoo(root: Path, n: int, dataset: str = "bench") -> tuple[Path, Path]:
    from mednns.data.spec import DatasetSpec
    from mednns.nn.space import SearchSpace
    from tests.synthetic import random_supernet, synthetic_zoo

    spec = DatasetSpec.from_dict({"name": dataset, "task": "multi-class", "channels": 1, "num_classes": 4,
                                  "image_size": 28, "splits": {"train": 1, "val": 1, "test": 1},
                                  "label_names": ["a", "b", "c", "d"], "source": "synthetic"})
    ckpt = random_supernet(root / "models" / "supernets" / f"{dataset}.pt", spec, SearchSpace())
    zoo = root / "zoo" / f"{dataset}.parquet"
    synthetic_zoo(ckpt, n, zoo, loadable=3)
    (root / "dvc.yaml").write_text("stages: {}\n")
    return zoo, ckpt


def median_s(fn, rounds: int = 5) -> float:
    fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


LOAD_BY_NAME = """
import json, sys, time
t0 = time.perf_counter()
import mlflow
import registry.lookup as lookup
from registry import load_model
t1 = time.perf_counter(); load_model(sys.argv[1]); t2 = time.perf_counter()
lookup._files = None                  # a new process's memory: the files come from the download cache
load_model(sys.argv[1]); t3 = time.perf_counter()
mlflow.pyfunc.load_model("models:/" + sys.argv[1] + "/latest"); t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "cold": t2 - t1, "cached": t3 - t2, "pyfunc": t4 - t3}))
"""


def browse(uri: str, name: str, tmp: Path, rounds: int = 3) -> dict:
    """Seconds to list a dataset's subnets above an accuracy (in-process and by the CLI) and to load one
    by name in a new process in an empty folder."""
    import json
    import os
    import subprocess
    import sys

    from registry.lookup import list_models

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp / "home"), "MLFLOW_TRACKING_URI": uri}
    exe = Path(sys.executable).with_name("mednns")
    cli = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = subprocess.run([str(exe), "zoo", "list", "--dataset", "bench", "--min-acc", "0.9"], env=env,
                             cwd=tmp, capture_output=True, text=True)
        cli.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr[-2000:]
    rows = len(list_models("bench", min_acc=0.9, uri=uri))
    loads = []
    for i in range(2):
        work = Path(tempfile.mkdtemp(dir=tmp))
        res = subprocess.run([sys.executable, "-c", LOAD_BY_NAME, name], cwd=work, capture_output=True, text=True,
                             env={**env, "MEDNNS_CACHE": str(work / "cache")})
        assert res.returncode == 0, res.stderr[-2000:]
        loads.append(json.loads(res.stdout.strip().splitlines()[-1]))
    load = {k: statistics.median(x[k] for x in loads) for k in loads[0]}
    return {"list_models (s)": median_s(lambda: list_models("bench", min_acc=0.9, uri=uri), rounds=rounds),
            "mednns zoo list (s)": statistics.median(cli), "rows listed": rows,
            "load_model, empty cache (s)": load["cold"], "load_model, cached (s)": load["cached"],
            "pyfunc load_model (s)": load["pyfunc"], "imports (s)": load["import"]}


def run(n: int, naive: int, workers: int, compare: bool, server_workers: int, growth: list[int]) -> None:
    from mednns import BNStats, bn_stats_path
    from registry.client import Registry
    from registry.lookup import list_models, resolve_version
    from registry.models import Loader, SyncReport, ZooRegistrar, subnet_name
    from tests.servers import MlflowServer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        zoo, ckpt = make_zoo(root, n)
        table = pd.read_parquet(zoo)
        bn_path = bn_stats_path(zoo)
        bn_all = BNStats.load(bn_path)
        loadable = table.arch_id.iloc[0]  # one of the archs with real-shaped statistics

        def write_step(size: int) -> None:  # the zoo rebuilt with the first `size` archs
            table.head(size).to_parquet(zoo, index=False)
            BNStats(bn_all.source, bn_all.recalibration,
                    {a: bn_all.stats[a] for a in table.arch_id.head(size)}).save(bn_path)

        with MlflowServer(root / "mlflow", workers=server_workers) as server:
            reg = Registry(server.uri)
            registrar = ZooRegistrar(reg, repo=root, workers=workers)
            run_id, source = registrar.loader_source(Loader("loader:naive", {"kind": "supernet"}))

            # naive baseline: what a plain loop over MlflowClient does
            t0 = time.perf_counter()
            for row in table.head(naive).itertuples():
                name = f"naive.{row.arch_id}"
                reg.client.create_registered_model(name, tags={"dataset": "bench"})
                reg.client.create_model_version(name, source, run_id=run_id,
                                                tags={"arch_json": row.arch_json, "val_acc": str(row.val_acc)})
            naive_s = (time.perf_counter() - t0) / max(naive, 1)

            sizes = sorted({*(g for g in growth if 0 < g < n), n})
            report, batch_s, scale = SyncReport(), 0.0, []
            for size in sizes:
                write_step(size)
                t0 = time.perf_counter()
                registrar.sync_dataset(zoo, ckpt, report, progress=False)
                batch_s += time.perf_counter() - t0
                scale.append({"registered subnets": size, **browse(server.uri, subnet_name("bench", loadable), root)})
            t0 = time.perf_counter()
            again = registrar.sync_dataset(zoo, ckpt, progress=False)
            rerun_s = time.perf_counter() - t0
            assert report.created == n and again.created == 0 and again.described == 0

            rows = [
                {"method": f"naive sequential ({naive} subnets)", "subnets/s": 1 / naive_s,
                 f"s for {n}": naive_s * n, "vs naive": 1.0},
                {"method": f"batch, {workers} threads" + (f" (in {len(sizes)} steps)" if len(sizes) > 1 else ""),
                 "subnets/s": n / batch_s, f"s for {n}": batch_s, "vs naive": naive_s * n / batch_s},
                {"method": "re-run (nothing new)", "subnets/s": n / rerun_s, f"s for {n}": rerun_s,
                 "vs naive": naive_s * n / rerun_s},
            ]
            print_table(f"Registering {n} subnets, mlflow server with SQLite ({server_workers} workers), "
                        f"{workers} client threads", rows)
            print(f"\n10,000 subnets at the batch rate: {10000 * batch_s / n / 60:.1f} min (target < 10 min)")
            cards = [v.description or "" for v in reg.search_versions("tags.dataset = 'bench'")]
            print(f"loader artifacts: {report.artifacts} uploaded, {report.artifact_bytes / 2 ** 20:.1f} MB in all "
                  f"({report.artifact_bytes / 2 ** 20 / max(report.artifacts, 1):.1f} MB each: checkpoint "
                  f"{ckpt.stat().st_size / 2 ** 20:.1f} MB + statistics + MLmodel), {report.artifact_seconds:.1f} s; "
                  f"cards: {statistics.mean(map(len, cards)):.0f} characters per version on average")
            base = scale[0]
            print_table("Browsing and loading by name, by registry size (median; ratio to the smallest size)",
                        [{**r, **{f"{k.split(' (')[0]} vs {base['registered subnets']}": r[k] / base[k]
                                  for k in ("list_models (s)", "mednns zoo list (s)", "load_model, empty cache (s)")}}
                         for r in scale])

            if not compare:
                return
            # the other mapping: one registered model for the dataset, one version per subnet
            flat = "flat.bench"
            reg.client.create_registered_model(flat, tags={"dataset": "bench"})
            t0 = time.perf_counter()
            failures = 0
            from concurrent.futures import ThreadPoolExecutor

            sample = reg.search_versions(f"name = '{subnet_name('bench', table.arch_id.iloc[0])}'")[0].tags

            def one(row):  # the same tags as the per-subnet entries, so only the mapping differs
                tags = {**sample, "dataset": "flat", "arch_id": row.arch_id, "arch_json": row.arch_json,
                        "key": f"flat:{row.arch_id}", "val_acc": str(row.val_acc)}
                try:
                    reg.call(reg.client.create_model_version, flat, source, run_id=run_id, await_creation_for=0,
                             tags=tags)
                    return 0
                except Exception:  # noqa: BLE001 - counted: version-number races the store gave up on
                    return 1

            with ThreadPoolExecutor(workers) as pool:
                failures = sum(pool.map(one, table.itertuples()))
            flat_s = time.perf_counter() - t0
            arch = table.arch_id.iloc[n // 2]
            c = reg.client
            q = [
                ("register all (threads)", batch_s, flat_s),
                ("find one subnet by name / arch_id",
                 median_s(lambda: resolve_version(subnet_name("bench", arch), reg)),
                 median_s(lambda: c.search_model_versions(f"name = '{flat}' AND tags.arch_id = '{arch}'"))),
                ("open the model's page (all its versions)",
                 median_s(lambda: c.search_model_versions(f"name = '{subnet_name('bench', arch)}'")),
                 median_s(lambda: c.search_model_versions(f"name = '{flat}'"), rounds=3)),
                ("model list, first page of 25 (name LIKE)",
                 median_s(lambda: c.search_registered_models("name LIKE 'mednns.bench.%'", max_results=25)),
                 median_s(lambda: c.search_registered_models("name LIKE 'flat.%'", max_results=25))),
                ("list_models: every subnet of the dataset with tags",
                 median_s(lambda: list_models("bench", uri=server.uri), rounds=3),
                 median_s(lambda: reg.search_versions("tags.dataset = 'flat'"), rounds=3)),
            ]
            print_table(f"Mapping: a registered model per subnet vs one per dataset ({n} subnets)",
                        [{"operation": op, "per subnet (s)": a, "per dataset (s)": b, "per dataset / per subnet": b / a}
                         for op, a, b in q])
            print(f"\nper-dataset mapping: {failures} of {n} versions failed (version-number races)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="subnets to register")
    parser.add_argument("--naive", type=int, default=100, help="subnets timed with the naive loop")
    parser.add_argument("--workers", type=int, default=8, help="client threads")
    parser.add_argument("--server-workers", type=int, default=4, help="uvicorn workers of the server")
    parser.add_argument("--compare", action="store_true", help="also time the per-dataset mapping")
    parser.add_argument("--growth", default="", help="comma-separated registry sizes below N to measure at too")
    args = parser.parse_args()
    run(args.n, args.naive, args.workers, args.compare, args.server_workers,
        [int(x) for x in args.growth.split(",") if x.strip()])


if __name__ == "__main__":
    main()
