"""Reading the registry: list, resolve and load what `registry.models` registered (timm style)."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pandas as pd

from mednns import MedNNSError
from registry.client import NOT_FOUND, Registry, literal
from registry.models import BROWSE_COLUMNS, CHAMPION, METASPACE, PREFIX, _check_dataset

log = logging.getLogger(__name__)


def _row(v) -> dict:
    t = v.tags
    row = {"name": v.name, "version": int(v.version), "dataset": t.get("dataset"), "arch_id": t.get("arch_id")}
    for c in BROWSE_COLUMNS:
        try:
            row[c] = float(t[c]) if c in t else math.nan
        except ValueError:
            row[c] = math.nan
    for c in ("params", "macs"):
        row[c] = int(row[c]) if not math.isnan(row[c]) else None
    row.update({"checkpoint_md5": t.get("checkpoint_md5"), "git_commit": t.get("git_commit")})
    return row


def list_models(dataset: str | None = None, min_acc: float | None = None, max_params: int | None = None,
                max_macs: int | None = None, max_latency_ms: float | None = None, all_versions: bool = False,
                sort: str = "val_acc", uri: str | None = None) -> pd.DataFrame:
    """Registered subnets as a table (latest version of each unless `all_versions`), best first.

    `min_acc` filters on val_acc. Columns: name, version, dataset, arch_id, params, macs, latency_ms,
    val_acc, val_auc, test_acc, test_auc, checkpoint_md5, git_commit.
    """
    reg = Registry(uri)
    # One tag condition per query: each one is a join on the tags table.
    filt = f"tags.dataset = {literal(_check_dataset(dataset))}" if dataset else "tags.kind = 'subnet'"
    rows = [_row(v) for v in reg.search_versions(filt) if v.tags.get("kind") == "subnet"]
    cols = ["name", "version", "dataset", "arch_id", *BROWSE_COLUMNS, "checkpoint_md5", "git_commit"]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    if not all_versions:
        df = df.sort_values("version").groupby("name", as_index=False).tail(1)
    if min_acc is not None:
        df = df[df.val_acc >= min_acc]
    if max_params is not None:
        df = df[df.params <= max_params]
    if max_macs is not None:
        df = df[df.macs <= max_macs]
    if max_latency_ms is not None:
        df = df[df.latency_ms <= max_latency_ms]
    if sort not in df.columns:
        raise MedNNSError(f"cannot sort by {sort!r}; one of {', '.join(cols)}")
    ascending = sort in ("params", "macs", "latency_ms", "name", "dataset", "arch_id")
    return df.sort_values([sort, "name"], ascending=[ascending, True]).reset_index(drop=True)


def parse_name(name_or_id: str) -> tuple[str, str | None, str | None]:
    """'models:/n/3' | 'n/3' | 'n@alias' | 'n' -> (name, version, alias)."""
    s = name_or_id.removeprefix("models:/")
    if "@" in s:
        name, alias = s.rsplit("@", 1)
        return name, None, alias
    if "/" in s:
        name, version = s.rsplit("/", 1)
        return name, version, None
    return s, None, None


def _checked_name(name_or_id: str) -> tuple[str, str | None, str | None]:
    """`parse_name`, refusing (in one line, before any request) a value MLflow's filters cannot take."""
    name, version, alias = parse_name(name_or_id.strip())
    for part, what in ((name, "model name"), (version, "version"), (alias, "alias")):
        if part is not None:
            literal(part, what)
    return name, version, alias


def resolve_version(name_or_id: str, reg: Registry | None = None):
    """The ModelVersion that `name_or_id` means.

    Accepted: a registered name (latest version), `name/<version>`, `name@<alias>`, a `models:/` URI,
    `<dataset>` (its champion), `<dataset>.<arch_id>`, or a bare arch_id when one dataset has it.
    """
    name, version, alias = _checked_name(name_or_id)
    reg = reg or Registry()
    c = reg.client
    candidates = [name]
    if not name.startswith(PREFIX + "."):
        candidates.append(f"{PREFIX}.{name}")
    for cand in candidates:
        if version is not None:
            v = reg.call(c.get_model_version, cand, version, ok=(NOT_FOUND, "INVALID_PARAMETER_VALUE"))
            if v is not None:
                return v
            continue
        if alias is not None:
            v = reg.call(c.get_model_version_by_alias, cand, alias, ok=(NOT_FOUND, "INVALID_PARAMETER_VALUE"))
            if v is not None:
                return v
            continue
        if cand.count(".") == 1 and cand != METASPACE:  # mednns.<dataset>: the champion line
            v = reg.call(c.get_model_version_by_alias, cand, CHAMPION, ok=(NOT_FOUND, "INVALID_PARAMETER_VALUE"))
            if v is not None:
                return v
        found = reg.search_versions(f"name = {literal(cand)}")
        if found:
            return max(found, key=lambda v: int(v.version))
    if version is None and alias is None and re.fullmatch(r"[0-9a-f]{12}", name):
        found = reg.search_versions(f"tags.kind = 'subnet' AND tags.arch_id = {literal(name)}")
        names = sorted({v.name for v in found})
        if len(names) == 1:
            return max(found, key=lambda v: int(v.version))
        if len(names) > 1:
            raise MedNNSError(f"arch {name} is registered for several datasets ({', '.join(names)}); "
                              "name one of them")
    what = f"{name}" + (f" version {version}" if version else "") + (f" alias @{alias}" if alias else "")
    raise MedNNSError(f"no registered model {what} in {reg.uri}; see `mednns zoo list`")


class _Files:
    """Registered files found by content hash (registry.artifacts: workspace, DVC cache, the copies a
    downloaded loader artifact holds, the download cache, the registry's artifact store), each loaded
    once: one `SubnetStore` keyed by checkpoint md5, and the zoos' BatchNorm statistics by md5."""

    def __init__(self):
        from mednns import SubnetStore

        self.paths: dict[str, Path] = {}
        self.store = SubnetStore(lambda md5: self.paths[md5])
        self.bn: dict[str, object] = {}

    def checkpoint(self, tags: dict, where: "_Where") -> str:
        from registry.artifacts import resolve_file

        md5 = tags["checkpoint_md5"]
        # resolved on every call: a file gone from here (or a newer download) is seen at once
        self.paths[md5] = resolve_file(tags["checkpoint"], md5, where.repo, where.copies, where.fetch(tags["checkpoint"]))
        return md5

    def bn_stats(self, tags: dict, where: "_Where"):
        from mednns import BNStats
        from registry.artifacts import resolve_file

        md5 = tags.get("bn_stats_md5")
        if not md5:
            raise MedNNSError(f"{tags.get('key', tags.get('arch_id'))}: registered without its recalibrated "
                              "BatchNorm statistics (an older zoo); re-run `dvc repro` and `mednns registry sync`")
        if md5 not in self.bn:
            if len(self.bn) >= 4:
                self.bn.pop(next(iter(self.bn)))
            self.bn[md5] = BNStats.load(resolve_file(tags["bn_stats"], md5, where.repo, where.copies,
                                                     where.fetch(tags["bn_stats"])))
        return self.bn[md5]


class _Where:
    """Where an entry's files may be besides the checkout: `copies` at hand, and the loader artifact at
    `source` in the artifact store of the registry at `uri` (fetched file by file)."""

    def __init__(self, repo=None, copies=(), source: str | None = None, uri: str | None = None):
        self.repo, self.copies, self.source, self.uri = repo, list(copies), source, uri

    def fetch(self, rel: str):
        if not self.source:
            return None
        from registry.loader import artifact_file

        def download(dst: Path) -> Path:
            import mlflow

            uri = f"{self.source.rstrip('/')}/{artifact_file(rel)}"
            log.info("downloading %s from the registry's artifact store", uri)
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                            tracking_uri=self.uri, registry_uri=self.uri))
        return download


_files: _Files | None = None


def _registered_files() -> _Files:
    global _files
    if _files is None:
        _files = _Files()
    return _files


def build_from_tags(tags: dict, repo: str | Path | None = None, copies=(), source: str | None = None,
                    uri: str | None = None):
    """The network a registry entry describes: a subnet exactly as the zoo scored it (its supernet's
    weights, its recalibrated BatchNorm statistics; so it scores what its tags say), the supernet, or
    the meta-space. Files are found by content hash in `repo` (or the project around the working folder),
    among `copies`, in the download cache, or fetched from the loader artifact at `source` (a version's
    source URI) of the registry at `uri`."""
    kind = tags.get("kind")
    files = _registered_files()
    where = _Where(repo, copies, source, uri)
    if kind in ("subnet", "champion"):
        md5 = files.checkpoint(tags, where)
        return files.store.subnet(md5, tags["arch_json"], files.bn_stats(tags, where))
    if kind == "supernet":
        import copy

        return copy.deepcopy(files.store.supernet(files.checkpoint(tags, where))).eval()
    if kind == "network":
        from mednns import load_network
        from registry.artifacts import resolve_file

        path = resolve_file(tags["network"], tags["network_md5"], repo, copies, where.fetch(tags["network"]))
        return load_network(path)[0]
    if kind == "metaspace":
        from mednns import MetaSpace
        from registry.artifacts import resolve_dir

        return MetaSpace.load(resolve_dir(tags["path"], tags["path_md5"], repo, copies, where.fetch(tags["path"])))
    raise MedNNSError(f"registry entry of unknown kind {kind!r}: not registered by MedNNS")


def load_model(name_or_id: str, repo: str | Path | None = None, uri: str | None = None):
    """A registered model as a torch module (timm style), in eval mode: a subnet is the network its
    zoo row scored (`net.cfg` says what it is and takes); a supernet name gives the supernet."""
    _checked_name(name_or_id)
    reg = Registry(uri)
    v = resolve_version(name_or_id, reg)
    return build_from_tags(v.tags, repo, source=v.source, uri=reg.uri)


def show(name_or_id: str, uri: str | None = None) -> dict:
    """Everything the registry knows of one entry: name, version, aliases, tags, its card (the version's
    description; the registered model's as model_description), other versions."""
    _checked_name(name_or_id)
    reg = Registry(uri)
    v = resolve_version(name_or_id, reg)
    model = reg.call(reg.client.get_registered_model, v.name)
    versions = reg.search_versions(f"name = {literal(v.name)}")
    return {"name": v.name, "version": int(v.version), "source": v.source, "run_id": v.run_id,
            "aliases": dict(getattr(model, "aliases", {}) or {}), "tags": dict(v.tags),
            "model_tags": dict(model.tags), "description": v.description, "model_description": model.description,
            "versions": sorted(int(x.version) for x in versions)}
