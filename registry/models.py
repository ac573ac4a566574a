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
* ``mednns.metaspace`` with alias ``champion`` for the meta-space model;
* ``mednns.<name>`` with alias ``current`` for each of the zoo's whole networks (``models/pretrained/<name>.pt``,
  the continually pre-trained EfficientNet-Lite0), a version per file.

Why not one registered model per dataset with a version per subnet? A model's page in the UI loads all
of its versions, and the server caps one page at 10^4 versions, so a dataset model with a version per
subnet cannot be browsed; searching is as fast either way (`python -m benchmarks.registry_register
--compare` measures both layouts; the README has the figures). One model per subnet keeps each page
short (its checkpoints), the model list is paged and searchable by name (``name LIKE
'mednns.bloodmnist.%'``) or tag (``tags.arch_id``, ``tags.dataset``), and a version's history means what
MLflow versions are for: the same network from successive checkpoints. The price is one more call per
*new* subnet (create the model); re-runs and new checkpoints of existing subnets pay nothing.

No weights are copied per subnet. Per supernet checkpoint (and zoo BatchNorm statistics file) one pyfunc
artifact (registry.loader: an MLmodel file with the signature and an input example, a JSON pointer, and
the checkpoint and statistics files themselves) is logged once; every version of the supernet, of every
subnet of that checkpoint and of its champion uses it as its ``source`` and carries its config
(``config``: what it is and takes), the arch (``arch_json``), the zoo's recalibration settings and all
browse tags: dataset, arch_id, params, macs, latency_ms, val/test acc and auc, eval_images, git_commit,
checkpoint(_md5), bn_stats(_md5), zoo_md5. `registry.lookup.load_model` gets the subnet from
`mednns.SubnetStore` (checkpoint and statistics found by md5 in the workspace, the DVC cache, the
download cache, or downloaded from that artifact, see registry.artifacts): the network the zoo scored,
from any folder that reaches the server. `mlflow.pyfunc.load_model("models:/<name>/<v>")` does the same
through registry.flavor, which reads the name and version MLflow writes next to the downloaded artifact.

Lineage: the artifact is logged into the run that produced the checkpoint (the supernet's training run,
found by its ``checkpoint_md5`` tag), so each version's run is that training run, with its params and
metrics. A checkpoint with no such run in this tracking store (made elsewhere) gets a run of the
experiment ``mednns-registry`` instead, with the checkpoint's settings and final scores as params and
metrics. Each version's description is its model card (registry.cards); a card that no longer matches
its tags (a rescored zoo, an entry registered before cards) is rewritten by the next sync.

Idempotent and resumable: a version is one exact network, keyed by the tag
``key = <dataset>:<arch_id>:<checkpoint md5>:<hash of its BatchNorm statistics>``.
A sync first lists (in one bulk search) the versions that exist for a checkpoint and creates only the
missing ones (a rescored zoo of the same checkpoint only refreshes the score tags);
RESOURCE_ALREADY_EXISTS on a model is fine; after creating it searches again and deletes
any duplicate of a key except its lowest version, so two syncs at once, or a sync whose server died
after committing a version but before answering, converge to exactly one version per key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


from mednns import MedNNSError
from registry import cards
from registry.artifacts import find_repo, git_commit, md5_file, relpath
from registry.client import ALREADY_EXISTS, NOT_FOUND, Registry, literal
from registry.loader import (METASPACE_METADATA, example_images, image_metadata, image_signature, loader_size,
                             metaspace_signature, raw_shape, write_loader)

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
    described: int = 0             # existing versions whose card was (re)written
    champions: dict[str, str] = field(default_factory=dict)
    artifacts: int = 0             # loader artifacts uploaded (one per new checkpoint / statistics file)
    artifact_bytes: int = 0
    artifact_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"datasets": len(self.datasets), "subnets": self.subnets, "created": self.created,
                "models_created": self.models_created, "duplicates_removed": self.duplicates_removed,
                "supernets_created": self.supernets_created, "retagged": self.retagged,
                "described": self.described, "champions": self.champions, "artifacts": self.artifacts,
                "artifact_mb": round(self.artifact_bytes / 2 ** 20, 2),
                "artifact_seconds": round(self.artifact_seconds, 2), "seconds": round(self.seconds, 2)}


@dataclass
class Loader:
    """One loader artifact to log (registry.loader): its identity `key`, what it points at and holds."""

    key: str
    pointer: dict
    files: dict[str, Path] = field(default_factory=dict)
    signature: object = None
    input_example: object = None
    metadata: dict | None = None
    produced_by: tuple[str, str] | None = None  # (tag, value) marking the run that made the files
    params: dict = field(default_factory=dict)   # for a registry run, when no run made them here
    metrics: dict = field(default_factory=dict)

    @property
    def short(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:12]


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

    def _producing_run(self, tag: str, value: str):
        """The first finished run of any experiment tagged `tag` = `value` (e.g. the supernet's training run)."""
        c = self.reg.client
        exps = [e.experiment_id for e in self.reg.call(c.search_experiments, max_results=1000)]
        if not exps:
            return None
        runs = self.reg.call(c.search_runs, exps, filter_string=f"tags.{tag} = '{value}'",
                             order_by=["attributes.start_time ASC"], max_results=20)
        done = [r for r in runs if r.info.status == "FINISHED"]
        return done[0] if done else None

    def _log_loader(self, run_id: str, loader: Loader, artifact_path: str, report: SyncReport | None) -> None:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "loader"
            write_loader(model_dir, loader.pointer, loader.files, loader.signature, loader.input_example,
                         loader.metadata)
            size = loader_size(model_dir)
            self.reg.call(self.reg.client.log_artifacts, run_id, str(model_dir), artifact_path)
        seconds = time.perf_counter() - t0
        log.info("logged loader artifact %s (%.1f MB) to run %s in %.1f s", artifact_path, size / 2 ** 20, run_id, seconds)
        if report is not None:
            report.artifacts += 1
            report.artifact_bytes += size
            report.artifact_seconds += seconds

    def loader_source(self, loader: Loader, report: SyncReport | None = None) -> tuple[str, str]:
        """(run_id, source URI) of the pyfunc loader artifact for `loader`, logged once per key: into the
        run that produced its files when this store has it, else into a run of its own."""
        c = self.reg.client
        made = self._producing_run(*loader.produced_by) if loader.produced_by else None
        if made is not None:
            path, marker = f"registry/loader-{loader.short}", f"mednns.loader.{loader.short}"
            run_id = made.info.run_id
            if made.data.tags.get(marker) != path:  # a marker set only after the upload finished
                self._log_loader(run_id, loader, path, report)
                self.reg.call(c.set_tag, run_id, marker, path)
            # The artifact store's own address, not `runs:/`: the server resolves only that one when the
            # UI asks a version for its MLmodel (its signature); `runs:/` leaves "No schema" there.
            return run_id, f"{made.info.artifact_uri}/{path}"

        exp_id = self._experiment_id()
        key = loader.key
        runs = self.reg.call(c.search_runs, [exp_id], filter_string=f"tags.key = {literal(key)}",
                             order_by=["attributes.start_time ASC"], max_results=50)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if done:
            run = done[0]
        else:
            # An unfinished run (an interrupted sync) is re-used: its artifact is re-logged whole.
            run = runs[0] if runs else self.reg.call(
                c.create_run, exp_id, run_name=key.replace(":", "-"), tags={"key": key, "kind": "loader"})
            self._log_lineage(run.info.run_id, loader)
            self._log_loader(run.info.run_id, loader, "loader", report)
            quiet = os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no "View run" line per loader
            try:
                self.reg.call(c.set_terminated, run.info.run_id, "FINISHED")
            finally:
                if quiet is None:
                    os.environ.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)
                else:
                    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = quiet
        return run.info.run_id, f"{run.info.artifact_uri}/loader"

    def _log_lineage(self, run_id: str, loader: Loader) -> None:
        """What is known of the files' making, on a registry run (no run of this store made them)."""
        from mlflow.entities import Metric, Param

        from registry.tracking import flatten

        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in flatten(loader.params).items()]
        metrics = [Metric(k, float(v), now, 0) for k, v in loader.metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        existing = self.reg.call(self.reg.client.get_run, run_id).data.params
        params = [p for p in params if p.key not in existing]  # a resumed run: params are write-once
        for i in range(0, max(len(params), len(metrics)), 100):
            if params[i:i + 100] or metrics[i:i + 100]:
                self.reg.call(self.reg.client.log_batch, run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])

    # --- helpers ---------------------------------------------------------------------------------

    def _ensure_model(self, name: str, tags: dict, description: str = "") -> bool:
        """Create registered model `name` unless it exists; True when this call created it."""
        created = self.reg.call(self.reg.client.create_registered_model, name, tags=tags,
                                description=description, ok=(ALREADY_EXISTS,))
        return created is not None

    def _describe_model(self, name: str, description: str) -> None:
        """Set a registered model's description (its card) when it says something else."""
        c = self.reg.client
        model = self.reg.call(c.get_registered_model, name)
        if (model.description or "") != description:
            self.reg.call(c.update_registered_model, name, description=description)

    def _create_version(self, name: str, source: str, run_id: str, tags: dict, description: str | None = None):
        return self.reg.call(self.reg.client.create_model_version, name, source, run_id=run_id, tags=tags,
                             description=description, await_creation_for=0)

    def _describe(self, v, description: str, report: SyncReport | None = None) -> None:
        if (v.description or "") != description:
            self.reg.call(self.reg.client.update_model_version, v.name, v.version, description=description)
            if report is not None:
                report.described += 1

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
                        model_tags: dict, description: str, report: SyncReport | None = None, card=None):
        """The single version of `name` holding `key` (created if missing, duplicates removed), its
        description `card(version)` when given."""
        found = self._versions_by_key(name, key)
        if not found:
            self._ensure_model(name, model_tags, description)
            self._create_version(name, source, run_id, {**tags, "key": key})
            found = self._versions_by_key(name, key)
        removed = self._dedupe(found)
        if report is not None:
            report.duplicates_removed += removed
        v = min(found, key=lambda v: int(v.version))
        if card is not None:
            self._describe(v, card(v), None)
        return v

    # --- one supernet and its zoo ----------------------------------------------------------------

    def checkpoint_loader(self, dataset: str, meta: dict, checkpoint: Path, bn_path: Path, files: dict) -> Loader:
        """The loader artifact of one checkpoint and statistics file: both inside, signature from its config."""
        from registry.tracking import flatten

        cfg = checkpoint_config(meta)
        final = (meta.get("summary") or {}).get("final") or {}
        return Loader(
            key=f"loader:{dataset}:{files['checkpoint_md5']}:{files['bn_stats_md5']}",
            pointer={"kind": "supernet", "dataset": dataset, **files},
            files={"checkpoint": checkpoint, "bn_stats": bn_path},
            signature=image_signature(cfg), input_example=example_images(raw_shape(cfg)),
            metadata={**image_metadata(cfg), "checkpoint_md5": files["checkpoint_md5"]},
            produced_by=("checkpoint_md5", files["checkpoint_md5"]),
            params={"dataset": dataset, "checkpoint": files["checkpoint"],
                    **flatten({"space": meta["config"]["space"], "spec": meta["spec"]})},
            metrics={f"final_{k}": v for k, v in final.items()})

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
        run_id, source = self.loader_source(self.checkpoint_loader(dataset, meta, checkpoint, bn_path, files), report)

        # the supernet
        summary = meta.get("summary") or {}
        final = summary.get("final") or {}
        sn_tags = {**common, "kind": "supernet", **{f"final_{k}": _fmt(v) for k, v in final.items()
                                                    if isinstance(v, (int, float))}}
        sn = supernet_name(dataset)
        before = len(self._versions_by_key(sn, f"supernet:{dataset}:{md5}"))
        v = self._ensure_version(sn, f"supernet:{dataset}:{md5}", source, run_id, sn_tags,
                                 {"dataset": dataset, "kind": "supernet"},
                                 f"Weight-sharing supernet trained on {dataset}", report,
                                 card=lambda v: cards.supernet_card(sn, v.version, {**sn_tags, **v.tags}, meta, v.run_id))
        report.supernets_created += int(before == 0)
        self.reg.call(self.reg.client.set_registered_model_alias, sn, CURRENT, v.version)

        # the subnets: one bulk search for what exists, then only the missing ones. A version is one exact
        # network: the checkpoint and the subnet's recalibrated statistics are in its key.
        existing_versions = self.reg.search_versions(f"tags.checkpoint_md5 = {literal(md5)} AND tags.kind = 'subnet'")
        keys = {v.tags.get("key") for v in existing_versions}
        if len(keys) < len(existing_versions):  # e.g. a create retried after the server died answering it
            report.duplicates_removed += self._dedupe(existing_versions)
        models = {m.name: max((int(x.version) for x in (m.latest_versions or [])), default=0)
                  for m in self.reg.search_models(f"name LIKE {literal(dataset_name(dataset) + '.%')}")}
        current = {}
        for v in sorted(existing_versions, key=lambda v: -int(v.version)):
            current[v.tags.get("key")] = v  # the lowest version of a key wins: the one _dedupe keeps
        todo, retag, wanted = [], [], {}
        for row in own.itertuples(index=False):
            name = subnet_name(dataset, row.arch_id)
            tags = {**common, **subnet_tags(meta, row._asdict(), bn), "kind": "subnet",
                    "key": f"{dataset}:{row.arch_id}:{md5}:{bn.digest(row.arch_id)}"}
            wanted[tags["key"]] = tags
            if tags["key"] in current:
                # same network: refresh the score tags of a rescored zoo, and a card that says otherwise
                old = current[tags["key"]]
                changed = {}
                if zoo_md5 and old.tags.get("zoo_md5") != zoo_md5:
                    changed = {k: tags[k] for k in (*BROWSE_COLUMNS, "zoo_md5") if old.tags.get(k) != tags[k]}
                card = cards.subnet_card(name, old.version, {**old.tags, **changed}, old.run_id)
                if changed or (old.description or "") != card:
                    retag.append((old, changed, card))
                continue
            model_tags = {"dataset": dataset, "kind": "subnet", "arch_id": row.arch_id, "arch_json": row.arch_json,
                          "params": _fmt(row.params), "macs": _fmt(row.macs)}
            # The version this create will get: the next after the model's latest (1 for a new model);
            # the check after the batch rewrites the few cards whose guess a concurrent sync made wrong.
            card = cards.subnet_card(name, models.get(name, 0) + 1, tags, run_id)
            todo.append((name, name in models, tags, model_tags, card))
        log.info("%s: %d subnets, %d already registered for checkpoint %s, %d to register",
                 dataset, len(own), len(own) - len(todo), md5[:8], len(todo))

        created_models = self._run_parallel(todo, source, run_id, desc=f"register {dataset}", progress=progress)
        report.created += len(todo)
        if retag:
            set_tag = self.reg.client.set_model_version_tag

            def refresh(job):
                old, changed, card = job
                for k, val in changed.items():
                    self.reg.call(set_tag, old.name, old.version, k, val)
                self._describe(old, card)
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(refresh, retag))
            report.retagged += sum(1 for _, changed, _ in retag if changed)
            report.described += sum(1 for old, _, card in retag if (old.description or "") != card)
        report.models_created += created_models
        if todo:
            after = self.reg.search_versions(f"tags.checkpoint_md5 = {literal(md5)} AND tags.kind = 'subnet'")
            report.duplicates_removed += self._dedupe(after)
            kept = {}
            for v in sorted(after, key=lambda v: -int(v.version)):
                kept[(v.name, v.tags.get("key"))] = v
            fix = [(v, cards.subnet_card(v.name, v.version, v.tags, v.run_id))
                   for v in kept.values() if v.tags.get("key") in wanted]
            fix = [(v, card) for v, card in fix if (v.description or "") != card]
            if fix:
                with ThreadPoolExecutor(self.workers) as pool:
                    list(pool.map(lambda job: self._describe(*job), fix))

        # the champion: best val_acc (ties: the smaller arch_id, so every machine picks the same)
        if len(own):
            best = own.sort_values(["val_acc", "arch_id"], ascending=[False, True], na_position="last").iloc[0]
            dn = dataset_name(dataset)
            key = f"{dataset}:{best.arch_id}:{md5}:{bn.digest(best.arch_id)}"
            tags = {**common, **subnet_tags(meta, best.to_dict(), bn), "kind": "champion",
                    "subnet": subnet_name(dataset, best.arch_id)}
            if not self._versions_by_key(dn, key):  # a new champion: remember the one it takes over from
                before = self.reg.call(self.reg.client.get_model_version_by_alias, dn, CHAMPION,
                                       ok=(NOT_FOUND, "INVALID_PARAMETER_VALUE"))
                if before is not None:
                    tags["previous_champion"] = str(before.version)

            def champion_card(v):
                t = {**tags, **v.tags}
                prev = None
                if t.get("previous_champion"):
                    p = self.reg.call(self.reg.client.get_model_version, dn, t["previous_champion"],
                                      ok=(NOT_FOUND,))
                    prev = {"version": t["previous_champion"], **(p.tags if p is not None else {})}
                beats = cards.champion_lines(dataset, best.to_dict(), own, prev)
                return cards.champion_card(dn, v.version, t, beats, v.run_id)

            v = self._ensure_version(dn, key, source, run_id, tags, {"dataset": dataset, "kind": "champion"},
                                     f"Champions of the {dataset} zoo (alias '{CHAMPION}': the current best)",
                                     report, card=champion_card)
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
            name, model_exists, tags, model_tags, card = item
            created = False
            if not model_exists:
                created = self._ensure_model(name, model_tags, cards.subnet_model_card(name, tags))
            self._create_version(name, source, run_id, tags, card)
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


def checkpoint_config(meta: dict):
    """What every network sliced from a checkpoint (`read_checkpoint`) takes and gives (no arch)."""
    from mednns import ModelConfig

    cfg, spec = meta["config"], meta["spec"]
    return ModelConfig(architecture="mbconv", in_channels=cfg["in_channels"], image_size=cfg["image_size"],
                       num_classes=cfg["num_classes"], task=spec["task"],
                       class_names=tuple(spec.get("label_names") or ()), source=spec["name"])


def sync(zoo_dir: str | Path = "zoo", supernet_dir: str | Path = "models/supernets", uri: str | None = None,
         workers: int = 8, datasets: Iterable[str] | None = None, repo: str | Path | None = None,
         progress: bool = True) -> SyncReport:
    """Register every zoo table of `zoo_dir` with its supernet: what `mednns registry sync` runs."""
    return ZooRegistrar(Registry(uri), repo=repo, workers=workers).sync(zoo_dir, supernet_dir, datasets,
                                                                         progress=progress)


def register_metaspace(path: str | Path = "models/metaspace", uri: str | None = None,
                       repo: str | Path | None = None, report: SyncReport | None = None) -> str:
    """Register the meta-space folder (DVC-tracked) as `mednns.metaspace`; alias champion -> it."""
    import pandas as pd

    from registry.artifacts import md5_dir

    registrar = ZooRegistrar(Registry(uri), repo=repo)
    path = Path(path)
    if not path.is_dir():
        raise MedNNSError(f"{path}: meta-space not found; run `dvc repro train_metaspace` or `dvc pull`")
    digest = md5_dir(path)
    rel = relpath(path, registrar.repo)
    try:
        config = json.loads((path / "config.json").read_text())
        candidates = pd.read_parquet(path / "candidates.parquet", columns=["arch_id"])
    except (OSError, ValueError) as e:
        raise MedNNSError(f"{path}: not a readable meta-space ({type(e).__name__}); re-run `dvc repro "
                          "train_metaspace` or `dvc checkout`") from None
    pointer = {"kind": "metaspace", "path": rel, "path_md5": digest}
    loader = Loader(key=f"loader:metaspace:{digest}", pointer=pointer, files={"path": path},
                    signature=metaspace_signature(), input_example=example_images((-1, 28, 28, 3), n=4),
                    metadata=METASPACE_METADATA, produced_by=("metaspace_md5", digest),
                    params={k: v for k, v in config.items() if k != "format"})
    run_id, source = registrar.loader_source(loader, report)
    tags = {"kind": "metaspace", "path": rel, "path_md5": digest, "git_commit": registrar.commit}
    v = registrar._ensure_version(METASPACE, f"metaspace:{digest}", source, run_id, tags,
                                  {"kind": "metaspace"}, "MedNNS meta-space: dataset -> ranked zoo models",
                                  card=lambda v: cards.metaspace_card(METASPACE, v.version, tags, config, candidates))
    registrar.reg.call(registrar.reg.client.set_registered_model_alias, METASPACE, CHAMPION, v.version)
    return f"{METASPACE}/{v.version}"


def network_name(path: str | Path) -> str:
    """`models/pretrained/<name>.pt` -> `mednns.<name>`."""
    return f"{PREFIX}.{_check_dataset(Path(path).stem)}"


def register_network(path: str | Path, uri: str | None = None, repo: str | Path | None = None,
                     report: SyncReport | None = None) -> str:
    """Register one of the zoo's whole networks (a `save_network` file, DVC-tracked) as `mednns.<name>`, a
    version per file content, alias current -> it. Loaded by name, it is that file's network."""
    from mednns import load_network

    registrar = ZooRegistrar(Registry(uri), repo=repo)
    path = Path(path)
    net, summary = load_network(path)  # a missing or damaged file is one line here
    cfg, md5, rel, name = net.cfg, md5_file(path), relpath(path, registrar.repo), network_name(path)
    loader = Loader(key=f"loader:network:{md5}", pointer={"kind": "network", "network": rel, "network_md5": md5},
                    files={"network": path}, signature=image_signature(cfg), input_example=example_images(raw_shape(cfg)),
                    metadata={**image_metadata(cfg), "network_md5": md5}, produced_by=("network_md5", md5),
                    params={"network": rel, **(summary.get("config") or {})},
                    metrics={f"val_acc_{d}": s["acc"] for d, s in (summary.get("val") or {}).items()})
    run_id, source = registrar.loader_source(loader, report)
    tags = {"kind": "network", "network": rel, "network_md5": md5, "git_commit": registrar.commit,
            "config": cfg.to_json(), "source": cfg.source, "image_size": str(cfg.image_size),
            "params": str(sum(p.numel() for p in net.parameters())),
            **{f"val_acc_{d}": _fmt(s["acc"]) for d, s in (summary.get("val") or {}).items()}}
    v = registrar._ensure_version(name, f"network:{md5}", source, run_id, tags, {"kind": "network"},
                                  f"{cfg.architecture} trained on {cfg.source}",
                                  card=lambda v: cards.network_card(name, v.version, tags, cfg, summary, v.run_id))
    registrar.reg.call(registrar.reg.client.set_registered_model_alias, name, CURRENT, v.version)
    return f"{name}/{v.version}"


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
