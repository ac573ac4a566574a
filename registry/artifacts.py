"""Where a registered model's files are: DVC-tracked paths, found again by content hash.

A registry entry never holds weights. It names a repo-relative path (`models/supernets/x.pt`) and the
DVC md5 of that file (DVC 3 hashes a file as the plain md5 of its bytes). On any machine the file is
found by that md5: the workspace copy if it matches, else the object in the local DVC cache
(`.dvc/cache/files/md5/ab/cdef...`), which `dvc pull` / `mednns zoo pull --rev <rev>` fills. So an
entry of an older zoo stays loadable after a newer checkpoint replaced the workspace file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from mednns import MedNNSError

_md5_cache: dict[tuple[str, int, int], str] = {}


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The md5 DVC records for a file (memoised by path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _md5_cache:
        h = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _md5_cache[key] = h.hexdigest()
    return _md5_cache[key]


def md5_dir(path: str | Path) -> str:
    """A content hash of a folder: md5 over sorted (relative path, file md5) pairs."""
    path = Path(path)
    entries = sorted((p.relative_to(path).as_posix(), md5_file(p)) for p in path.rglob("*") if p.is_file())
    return hashlib.md5(json.dumps(entries).encode()).hexdigest()


def find_repo(start: str | Path | None = None) -> Path:
    """The project root: MEDNNS_REPO, else the nearest folder up from `start` (or cwd) with dvc.yaml or .dvc."""
    if start is None and os.environ.get("MEDNNS_REPO"):
        return Path(os.environ["MEDNNS_REPO"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / ".dvc").is_dir():
            return folder
    return here


def relpath(path: str | Path, repo: Path) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(repo.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def git_commit(repo: Path) -> str:
    """HEAD of the repo's git checkout ('+dirty' when tracked files changed), or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_cache_dir(repo: Path) -> Path:
    """The local DVC cache folder (`cache.dir` of .dvc/config[.local] when set, else .dvc/cache)."""
    import configparser

    cache = repo / ".dvc" / "cache"
    for name in ("config", "config.local"):
        cfg_path = repo / ".dvc" / name
        if cfg_path.is_file():
            cfg = configparser.ConfigParser()
            try:
                cfg.read(cfg_path)
            except configparser.Error:
                continue
            if cfg.has_option("cache", "dir"):
                d = Path(cfg.get("cache", "dir"))
                cache = d if d.is_absolute() else (repo / ".dvc" / d).resolve()
    return cache


def resolve_file(rel: str, md5: str, repo: str | Path | None = None) -> Path:
    """The file registered as (`rel`, `md5`) on this machine: workspace copy or DVC cache object."""
    root = Path(repo).resolve() if repo else find_repo()
    candidate = Path(rel) if Path(rel).is_absolute() else root / rel
    if candidate.is_file() and md5_file(candidate) == md5:
        return candidate
    cached = dvc_cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]
    if cached.is_file():
        return cached
    state = "has other contents" if candidate.is_file() else "is missing"
    raise MedNNSError(f"{rel} (md5 {md5[:8]}) not found in {root}: the workspace file {state} and the DVC "
                      f"cache lacks it; run `mednns zoo pull --rev <commit>` or `dvc pull` there")


def resolve_dir(rel: str, md5: str, repo: str | Path | None = None) -> Path:
    root = Path(repo).resolve() if repo else find_repo()
    candidate = Path(rel) if Path(rel).is_absolute() else root / rel
    if candidate.is_dir() and md5_dir(candidate) == md5:
        return candidate
    state = "has other contents" if candidate.is_dir() else "is missing"
    raise MedNNSError(f"{rel} (hash {md5[:8]}) not found in {root}: the folder {state}; check out the "
                      "matching version (`git checkout <commit> && dvc checkout`, or `dvc pull`)")
