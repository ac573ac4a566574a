"""The `prepare` stage's artefact: a validated copy of a dataset plus a manifest, and its reader."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mednns import __version__
from mednns.data.catalog import resolve
from mednns.data.loader import load_source
from mednns.data.npz import MedDataset, build_dataset, read_arrays
from mednns.data.spec import SPLITS, DatasetSpec
from mednns.utils.errors import DataError, os_error_line
from mednns.utils.io import atomic_path, sha256_file

log = logging.getLogger(__name__)

DATA_FILE, MANIFEST_FILE = "data.npz", "manifest.json"


@dataclass(frozen=True)
class PrepareConfig:
    """`params.yaml: prepare`."""

    size: int = 28           # MedMNIST image size: 28, 64, 128 or 224
    download: bool = True    # fetch with medmnist's URLs when the file is not in MEDNNS_DATA_DIR


def manifest_for(ds: MedDataset, data_sha256: str, source_path: Path, source_sha256: str) -> dict:
    # Only the file name: an absolute path would make the same data a different DVC output per machine.
    spec = replace(ds.spec, source=source_path.name)
    return {
        "spec": spec.to_dict(),
        "counts": {s: {"total": ds.spec.splits[s], "per_class": ds.class_counts(s)} for s in SPLITS},
        "sha256": {DATA_FILE: data_sha256},
        "source": {"file": source_path.name, "sha256": source_sha256},
        "mednns_version": __version__,
    }


def check_out_dir(out_dir: str | Path) -> Path:
    """`out_dir` may be new, empty, or an earlier prepared copy (which is replaced): never a folder
    holding anything else, which `prepare` would otherwise delete."""
    out = Path(out_dir)
    for folder in reversed((out, *out.parents)):
        if folder.exists() and not folder.is_dir():
            where = "it is a file" if folder == out else f"{folder} is a file, not a folder"
            raise DataError(f"{out}: cannot be the output folder ({where}); choose another --out")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not (set(entries) <= {DATA_FILE, MANIFEST_FILE} and _is_prepared(out)):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise DataError(f"{out}: holds files that `prepare` did not write ({shown}); give a new or empty "
                            "folder as --out (nothing was changed)")
    return out


def _is_prepared(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"spec", "sha256", "source"} <= set(manifest)


def prepare(name_or_path: str, out_dir: str | Path, size: int = 28, root: str | Path | None = None,
            download: bool = True, task: str | None = None, num_classes: int | None = None) -> dict:
    """Validate a dataset and write `<out_dir>/data.npz` and `manifest.json`, all or nothing.

    `out_dir` must be new, empty, or an earlier prepared copy (`check_out_dir`)."""
    out_dir = check_out_dir(out_dir)
    source = resolve(name_or_path, size=size, root=root, download=download)
    ds = load_source(source, task=task, num_classes=num_classes)
    log.info("%s: %s, %d channel(s), %d classes, splits %s", ds.spec.name, ds.spec.task.value,
             ds.spec.channels, ds.spec.num_classes, ds.spec.splits)
    try:
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            arrays = {}
            for split in SPLITS:
                arrays[f"{split}_images"] = ds.images(split)
                arrays[f"{split}_labels"] = ds.labels(split)
            # Uncompressed: training reads this file on every run, and DVC already dedups it.
            np.savez(tmp / DATA_FILE, **arrays)
            manifest = manifest_for(ds, sha256_file(tmp / DATA_FILE), source.path,
                                    sha256_file(source.path))
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise DataError(f"cannot write the prepared copy: {os_error_line(e, out_dir)} (nothing was written)") from e
    log.info("%s: wrote %s", ds.spec.name, out_dir)
    return manifest


def load_prepared(folder: str | Path, verify: bool = True) -> MedDataset:
    """Read a prepared dataset back; with `verify`, refuse one whose data no longer matches."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise DataError(f"{folder}: no {MANIFEST_FILE}; run `dvc repro prepare` (or `mednns data "
                        "prepare`) first")
    try:
        manifest = json.loads(manifest_path.read_text())
        spec = DatasetSpec.from_dict(manifest["spec"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{manifest_path}: unreadable manifest ({e}); re-run the prepare stage") from None
    data = folder / DATA_FILE
    if verify and sha256_file(data) != manifest["sha256"][DATA_FILE]:
        raise DataError(f"{data}: sha256 differs from the manifest; re-run the prepare stage "
                        "(`dvc repro -f prepare`) or `dvc checkout`")
    return build_dataset(read_arrays(data), str(data), spec.name, spec.source, task=spec.task,
                         num_classes=spec.num_classes, channels=spec.channels,
                         label_names=spec.label_names)
