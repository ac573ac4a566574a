"""The zoo in the MLflow model registry: every subnet, every supernet, the champions, the meta-space.

Mapping (the measurements behind it are below)
----------------------------------------------
* one registered model per subnet, ``mednns.<dataset>.<arch_id>``; one version per supernet
  checkpoint it was sliced from (a retrained supernet = a new version of every subnet);
* one registered model per supernet, ``mednns.<dataset>.supernet``, a version per checkpoint,
  alias ``current``;
* one registered model per dataset, ``mednns.<dataset>``, whose versions are that dataset's successive
  champions (best val_acc of each zoo version), alias ``champion``: the alias moves when a newer zoo
  has another best subnet, and the older versions stay loadable;
* ``mednns.metaspace`` with alias ``champion`` for the meta-space model.

Why not one registered model per dataset with a version per subnet? A model's page in the UI loads all
of its versions, and the server caps one page at 10^4 versions, so a dataset model with a version per
subnet cannot be browsed; searching is as fast either way (`python -m benchmarks.registry_register
--compare` measures both layouts; the README has the figures). One model per subnet keeps each page
short (its checkpoints), the model list is paged and searchable by name (``name LIKE
'mednns.bloodmnist.%'``) or tag (``tags.arch_id``, ``tags.dataset``), and a version's history means what
MLflow versions are for: the same network from successive checkpoints. The price is one more call per
*new* subnet (create the model); re-runs and new checkpoints of existing subnets pay nothing.

No weights are copied per subnet. Per supernet checkpoint (and zoo BatchNorm statistics file) one tiny
pyfunc artifact (an MLmodel file and a JSON pointer: repo-relative paths + DVC md5s) is logged once to a
run of the experiment ``mednns-registry``; every version of every subnet of that checkpoint uses it as
its ``source`` and carries its config (``config``: what it is and takes), the arch (``arch_json``), the
zoo's recalibration settings and all browse tags: dataset, arch_id, params, macs, latency_ms, val/test acc
and auc, eval_images, git_commit, checkpoint(_md5), bn_stats(_md5), zoo_md5. `registry.lookup.load_model`
gets the subnet from `mednns.SubnetStore` (checkpoint and statistics found by md5 in the workspace or the
DVC cache, see registry.artifacts): the network the zoo scored. `mlflow.pyfunc.load_model("models:/<name>/<v>")`
does the same through registry.flavor, which reads the name and version MLflow writes next to the
downloaded artifact.

Idempotent and resumable: a version is one exact network, keyed by the tag
``key = <dataset>:<arch_id>:<checkpoint md5>:<hash of its BatchNorm statistics>``.
A sync first lists (in one bulk search) the versions that exist for a checkpoint and creates only the
missing ones (a rescored zoo of the same checkpoint only refreshes the score tags);
RESOURCE_ALREADY_EXISTS on a model is fine; after creating it searches again and deletes
any duplicate of a key except its lowest version, so two syncs at once, or a sync whose server died
after committing a version but before answering, converge to exactly one version per key.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from mednns import MedNNSError
from registry.artifacts import find_repo, git_commit, md5_file, relpath
from registry.client import ALREADY_EXISTS, NOT_FOUND, Registry, literal

log = logging.getLogger(__name__)

PREFIX = "mednns"
EXPERIMENT = "mednns-registry"
CHAMPION = "champion"
CURRENT = "current"
SCORE_COLUMNS = ("val_acc", "val_auc", "test_acc", "test_auc")
BROWSE_COLUMNS = ("params", "macs", "latency_ms", *SCORE_COLUMNS)
_NAME_OK = re.compile(r"^[A-Za-z0-9_\-]+$")


def subnet_name(dataset: str, arch_id: str) -> str:
    return f"{PREFIX}.{dataset}.{arch_id}"


def supernet_name(dataset: str) -> str:
    return f"{PREFIX}.{dataset}.supernet"


def dataset_name(dataset: str) -> str:
    return f"{PREFIX}.{dataset}"


METASPACE = f"{PREFIX}.metaspace"


def _check_dataset(name: str) -> str:
    if not _NAME_OK.match(name):
        raise MedNNSError(f"dataset name {name!r}: only letters, digits, '-' and '_' can be registered")
    return name


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


@dataclass(frozen=True)
class RegisterConfig:
    """`params.yaml: register`."""

    workers: int = 8   # parallel requests to the MLflow server (the embedded mlflow.db uses 1)


@dataclass
class SyncReport:
    datasets: list[str] = field(default_factory=list)
    subnets: int = 0
    created: int = 0
    models_created: int = 0
    duplicates_removed: int = 0
    supernets_created: int = 0
    retagged: int = 0
    champions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"datasets": len(self.datasets), "subnets": self.subnets, "created": self.created,
                "models_created": self.models_created, "duplicates_removed": self.duplicates_removed,
                "supernets_created": self.supernets_created, "retagged": self.retagged, "champions": self.champions,
                "seconds": round(self.seconds, 2)}


# --------------------------------------------------------------------------------------------------
# registration


class ZooRegistrar:
    """Registers zoo tables and their supernet checkpoints (see the module docstring)."""

    def __init__(self, registry: Registry | None = None, repo: str | Path | None = None, workers: int = 8):
        self.reg = registry or Registry()
        self.repo = Path(repo).resolve() if repo else find_repo()
        # The embedded SQLite store runs in this process: threads would only fight over its lock.
        self.workers = workers if self.reg.is_server else 1
        self._commit: str | None = None

    @property
    def commit(self) -> str:
        if self._commit is None:
            self._commit = git_commit(self.repo)
        return self._commit

    # --- the one artifact per checkpoint --------------------------------------------------------

    def _experiment_id(self) -> str:
        c = self.reg.client
        exp = self.reg.call(c.get_experiment_by_name, EXPERIMENT)
        if exp is None:
            self.reg.call(c.create_experiment, EXPERIMENT, ok=(ALREADY_EXISTS,))
            exp = self.reg.call(c.get_experiment_by_name, EXPERIMENT)
        return exp.experiment_id

    def loader_source(self, key: str, pointer: dict) -> tuple[str, str]:
        """(run_id, source URI) of the pyfunc loader artifact for `pointer`, logged once per key."""
        c = self.reg.client
        exp_id = self._experiment_id()
        runs = self.reg.call(c.search_runs, [exp_id], filter_string=f"tags.key = {literal(key)}",
                             order_by=["attributes.start_time ASC"], max_results=50)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if done:
            run = done[0]
        else:
            # An unfinished run (an interrupted sync) is re-used: its artifact is re-logged whole.
            run = runs[0] if runs else self.reg.call(
                c.create_run, exp_id, run_name=key.replace(":", "-"), tags={"key": key, "kind": "loader"})
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = Path(tmp) / "loader"
                write_loader(model_dir, pointer)
                self.reg.call(c.log_artifacts, run.info.run_id, str(model_dir), "loader")
            quiet = os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no "View run" line per loader
            try:
                self.reg.call(c.set_terminated, run.info.run_id, "FINISHED")
            finally:
                if quiet is None:
                    os.environ.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)
                else:
                    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = quiet
        return run.info.run_id, f"runs:/{run.info.run_id}/loader"

    # --- helpers ---------------------------------------------------------------------------------

    def _ensure_model(self, name: str, tags: dict, description: str = "") -> bool:
        """Create registered model `name` unless it exists; True when this call created it."""
        created = self.reg.call(self.reg.client.create_registered_model, name, tags=tags,
                                description=description, ok=(ALREADY_EXISTS,))
        return created is not None

    def _create_version(self, name: str, source: str, run_id: str, tags: dict):
        return self.reg.call(self.reg.client.create_model_version, name, source, run_id=run_id, tags=tags,
                             await_creation_for=0)

    def _dedupe(self, versions: Iterable) -> int:
        """Delete every version whose `key` tag an older version of the same model already holds."""
        seen: dict[tuple[str, str], int] = {}
        extra = []
        for v in sorted(versions, key=lambda v: (v.name, int(v.version))):
            k = (v.name, v.tags.get("key", ""))
            if k in seen:
                extra.append(v)
            else:
                seen[k] = int(v.version)
        for v in extra:
            self.reg.call(self.reg.client.delete_model_version, v.name, v.version, ok=(NOT_FOUND,))
        return len(extra)

    def _versions_by_key(self, name: str, key: str) -> list:
        return self.reg.search_versions(f"name = {literal(name)} AND tags.key = {literal(key)}")

    def _ensure_version(self, name: str, key: str, source: str, run_id: str, tags: dict,
                        model_tags: dict, description: str, report: SyncReport | None = None):
        """The single version of `name` holding `key` (created if missing, duplicates removed)."""
        found = self._versions_by_key(name, key)
        if not found:
            self._ensure_model(name, model_tags, description)
            self._create_version(name, source, run_id, {**tags, "key": key})
            found = self._versions_by_key(name, key)
        removed = self._dedupe(found)
        if report is not None:
            report.duplicates_removed += removed
        return min(found, key=lambda v: int(v.version))

    # --- one supernet and its zoo ----------------------------------------------------------------

    def sync_dataset(self, zoo: str | Path, checkpoint: str | Path, report: SyncReport | None = None,
                     progress: bool = True) -> SyncReport:
        """Register one zoo table (`zoo/<dataset>.parquet`, its BatchNorm statistics beside it) and its
        supernet checkpoint."""
        from mednns import BNStats, bn_stats_path, read_checkpoint, read_zoo

        report = report or SyncReport()
        t0 = time.time()
        zoo, checkpoint, bn_path = Path(zoo), Path(checkpoint), bn_stats_path(zoo)
        zoo_md5 = md5_file(zoo) if zoo.is_file() else ""
        table = read_zoo(zoo)
        if not checkpoint.is_file():
            raise MedNNSError(f"{checkpoint}: checkpoint not found; run `dvc repro train_supernet` or `dvc pull`")
        bn = BNStats.load(bn_path)
        sources = table.source_dataset.unique()
        if len(sources) != 1:
            raise MedNNSError(f"zoo table holds {len(sources)} source datasets; register one supernet's zoo at a time")
        dataset = _check_dataset(str(sources[0]))
        meta = read_checkpoint(checkpoint)
        if meta["spec"]["name"] != dataset or bn.source != dataset:
            raise MedNNSError(f"{checkpoint}, {bn_path}: of {meta['spec']['name']} and {bn.source}, zoo of {dataset}")
        md5, bn_md5 = md5_file(checkpoint), md5_file(bn_path)
        ckpt_rel, bn_rel = relpath(checkpoint, self.repo), relpath(bn_path, self.repo)
        own = table[table.target_dataset == dataset].drop_duplicates("arch_id")
        files = {"checkpoint": ckpt_rel, "checkpoint_md5": md5, "bn_stats": bn_rel, "bn_stats_md5": bn_md5}
        common = {"dataset": dataset, "git_commit": self.commit, "zoo_md5": zoo_md5, **files}
        pointer = {"kind": "supernet", "dataset": dataset, **files}
        run_id, source = self.loader_source(f"loader:{dataset}:{md5}:{bn_md5}", pointer)

        # the supernet
        summary = meta.get("summary") or {}
        final = summary.get("final") or {}
        sn_tags = {**common, "kind": "supernet", **{f"final_{k}": _fmt(v) for k, v in final.items()
                                                    if isinstance(v, (int, float))}}
        sn = supernet_name(dataset)
        before = len(self._versions_by_key(sn, f"supernet:{dataset}:{md5}"))
        v = self._ensure_version(sn, f"supernet:{dataset}:{md5}", source, run_id, sn_tags,
                                 {"dataset": dataset, "kind": "supernet"},
                                 f"Weight-sharing supernet trained on {dataset}", report)
        report.supernets_created += int(before == 0)
        self.reg.call(self.reg.client.set_registered_model_alias, sn, CURRENT, v.version)

        # the subnets: one bulk search for what exists, then only the missing ones. A version is one exact
        # network: the checkpoint and the subnet's recalibrated statistics are in its key.
        existing_versions = self.reg.search_versions(f"tags.checkpoint_md5 = {literal(md5)} AND tags.kind = 'subnet'")
        keys = {v.tags.get("key") for v in existing_versions}
        if len(keys) < len(existing_versions):  # e.g. a create retried after the server died answering it
            report.duplicates_removed += self._dedupe(existing_versions)
        models = {m.name for m in self.reg.search_models(f"name LIKE {literal(dataset_name(dataset) + '.%')}")}
        current = {}
        for v in sorted(existing_versions, key=lambda v: -int(v.version)):
            current[v.tags.get("key")] = v  # the lowest version of a key wins: the one _dedupe keeps
        todo, retag = [], []
        for row in own.itertuples(index=False):
            name = subnet_name(dataset, row.arch_id)
            tags = {**common, **subnet_tags(meta, row._asdict(), bn), "kind": "subnet",
                    "key": f"{dataset}:{row.arch_id}:{md5}:{bn.digest(row.arch_id)}"}
            if tags["key"] in current:
                # same network, rescored zoo: refresh the score tags only
                old = current[tags["key"]]
                if zoo_md5 and old.tags.get("zoo_md5") != zoo_md5:
                    changed = {k: tags[k] for k in (*BROWSE_COLUMNS, "zoo_md5") if old.tags.get(k) != tags[k]}
                    retag.append((name, old.version, changed))
                continue
            model_tags = {"dataset": dataset, "kind": "subnet", "arch_id": row.arch_id, "arch_json": row.arch_json,
                          "params": _fmt(row.params), "macs": _fmt(row.macs)}
            todo.append((name, name in models, tags, model_tags))
        log.info("%s: %d subnets, %d already registered for checkpoint %s, %d to register",
                 dataset, len(own), len(own) - len(todo), md5[:8], len(todo))

        created_models = self._run_parallel(todo, source, run_id, desc=f"register {dataset}", progress=progress)
        report.created += len(todo)
        if retag:
            set_tag = self.reg.client.set_model_version_tag
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(lambda job: [self.reg.call(set_tag, job[0], job[1], k, v) for k, v in job[2].items()],
                              retag))
            report.retagged += len(retag)
        report.models_created += created_models
        if todo:
            report.duplicates_removed += self._dedupe(
                self.reg.search_versions(f"tags.checkpoint_md5 = {literal(md5)} AND tags.kind = 'subnet'"))

        # the champion: best val_acc (ties: the smaller arch_id, so every machine picks the same)
        if len(own):
            best = own.sort_values(["val_acc", "arch_id"], ascending=[False, True], na_position="last").iloc[0]
            tags = {**common, **subnet_tags(meta, best.to_dict(), bn), "kind": "champion",
                    "subnet": subnet_name(dataset, best.arch_id)}
            dn = dataset_name(dataset)
            v = self._ensure_version(dn, f"{dataset}:{best.arch_id}:{md5}:{bn.digest(best.arch_id)}", source, run_id,
                                     tags,
                                     {"dataset": dataset, "kind": "champion"},
                                     f"Champions of the {dataset} zoo (alias '{CHAMPION}': the current best)",
                                     report)
            self.reg.call(self.reg.client.set_registered_model_alias, dn, CHAMPION, v.version)
            report.champions[dataset] = f"{subnet_name(dataset, best.arch_id)} (v{v.version} of {dn})"

        report.datasets.append(dataset)
        report.subnets += len(own)
        report.seconds += time.time() - t0
        return report

    def _run_parallel(self, todo: list, source: str, run_id: str, desc: str, progress: bool) -> int:
        import sys

        from tqdm.auto import tqdm

        def one(item) -> bool:
            name, model_exists, tags, model_tags = item
            created = False
            if not model_exists:
                created = self._ensure_model(name, model_tags, f"Subnet {tags['arch_id']} of the "
                                                               f"{tags['dataset']} supernet")
            self._create_version(name, source, run_id, tags)
            return created

        if not todo:
            return 0
        bar = tqdm(total=len(todo), desc=desc, unit="subnet", disable=not progress,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        created = 0
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(one, item) for item in todo]
            try:
                for fut in futures:
                    created += int(fut.result())
                    bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                wait(futures, return_when=FIRST_EXCEPTION)
                raise
            finally:
                bar.close()
        return created

    # --- many datasets ---------------------------------------------------------------------------

    def sync(self, zoo_dir: str | Path = "zoo", supernet_dir: str | Path = "models/supernets",
             datasets: Iterable[str] | None = None, progress: bool = True) -> SyncReport:
        zoo_dir, supernet_dir = Path(zoo_dir), Path(supernet_dir)
        tables = sorted(zoo_dir.glob("*.parquet"))
        if datasets is not None:
            wanted = set(datasets)
            tables = [t for t in tables if t.stem in wanted]
        if not tables:
            raise MedNNSError(f"{zoo_dir}: no zoo tables (*.parquet); run `dvc repro build_zoo` or `dvc pull`")
        report = SyncReport()
        for table in tables:
            self.sync_dataset(table, supernet_dir / f"{table.stem}.pt", report, progress=progress)
        return report


def write_loader(model_dir: Path, pointer: dict) -> None:
    """A pyfunc model folder whose loader (registry.flavor) rebuilds the network from `pointer`."""
    import mlflow
    import torch

    signature = None
    if pointer.get("kind") == "metaspace":  # query settings as pyfunc params
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import ParamSchema, ParamSpec

        signature = ModelSignature(inputs=None, outputs=None, params=ParamSchema([
            ParamSpec("k", "long", 5), ParamSpec("max_params", "long", None), ParamSpec("max_macs", "long", None),
            ParamSpec("max_latency_ms", "double", None)]))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pointer.json"
        data.write_text(json.dumps(pointer, sort_keys=True, indent=1))
        with warnings.catch_warnings():  # "no input example": inputs are images or an npz path
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(str(model_dir), loader_module="registry.flavor", data_path=str(data),
                                     signature=signature, pip_requirements=[f"torch=={torch.__version__}",
                                                                            f"mlflow=={mlflow.__version__}"])


def sync(zoo_dir: str | Path = "zoo", supernet_dir: str | Path = "models/supernets", uri: str | None = None,
         workers: int = 8, datasets: Iterable[str] | None = None, repo: str | Path | None = None,
         progress: bool = True) -> SyncReport:
    """Register every zoo table of `zoo_dir` with its supernet: what `mednns registry sync` runs."""
    return ZooRegistrar(Registry(uri), repo=repo, workers=workers).sync(zoo_dir, supernet_dir, datasets,
                                                                         progress=progress)


def register_metaspace(path: str | Path = "models/metaspace", uri: str | None = None,
                       repo: str | Path | None = None) -> str:
    """Register the meta-space folder (DVC-tracked) as `mednns.metaspace`; alias champion -> it."""
    from registry.artifacts import md5_dir

    registrar = ZooRegistrar(Registry(uri), repo=repo)
    path = Path(path)
    if not path.is_dir():
        raise MedNNSError(f"{path}: meta-space not found; run `dvc repro train_metaspace` or `dvc pull`")
    digest = md5_dir(path)
    rel = relpath(path, registrar.repo)
    pointer = {"kind": "metaspace", "path": rel, "path_md5": digest}
    run_id, source = registrar.loader_source(f"loader:metaspace:{digest}", pointer)
    tags = {"kind": "metaspace", "path": rel, "path_md5": digest, "git_commit": registrar.commit}
    v = registrar._ensure_version(METASPACE, f"metaspace:{digest}", source, run_id, tags,
                                  {"kind": "metaspace"}, "MedNNS meta-space: dataset -> ranked zoo models")
    registrar.reg.call(registrar.reg.client.set_registered_model_alias, METASPACE, CHAMPION, v.version)
    return f"{METASPACE}/{v.version}"


# --------------------------------------------------------------------------------------------------
# browsing and loading


def subnet_tags(checkpoint_meta: dict, row: dict, bn) -> dict[str, str]:
    """A subnet version's tags: its config (what it is and takes, with the zoo's recalibration), its
    arch, and its zoo row's size and scores (what it scores when loaded)."""
    from dataclasses import replace

    from mednns import Arch, subnet_config

    cfg = replace(subnet_config(checkpoint_meta, Arch.from_json(row["arch_json"])),
                  recalibration=bn.recalibration.to_dict())
    return {"arch_id": row["arch_id"], "arch_json": row["arch_json"], "config": cfg.to_json(),
            "in_channels": str(cfg.in_channels), "image_size": str(cfg.image_size), "task": cfg.task,
            "num_classes": str(cfg.num_classes), "eval_images": str(int(row["eval_images"])),
            **{f"recalib_{k}": str(v) for k, v in cfg.recalibration.items()},
            **{c: _fmt(row[c]) for c in BROWSE_COLUMNS}}
