"""Atomic file output: a crash or a bad input never leaves a half-written artefact behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_paths(*targets: str | Path) -> Iterator[list[Path]]:
    """Yield a temporary path beside each target; they replace their targets, one rename each, only
    if the block succeeds, so outputs that belong together appear together or not at all.

    Works for files or folders: whatever the block writes at a yielded path is moved into place.
    """
    targets = [Path(t) for t in targets]
    roots: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            roots.append(Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)))
        tmps = [root / target.name for root, target in zip(roots, targets)]
        yield tmps
        for tmp, target in zip(tmps, targets):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(tmp, target)
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds.

    Works for a file or a folder: whatever the block writes at the yielded path is moved into place.
    """
    with atomic_paths(target) as (tmp,):
        yield tmp


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
