"""Where a registered model's files are: DVC-tracked paths, found again by content hash.

A registry entry names a repo-relative path (`models/supernets/x.pt`) and the DVC md5 of that file (DVC 3
hashes a file as the plain md5 of its bytes). On any machine the file is found by that md5, first match
wins: the workspace copy, the object in the local DVC cache (`.dvc/cache/files/md5/ab/cdef...`, which
`dvc pull` / `mednns zoo pull --rev <rev>` fill), a copy the caller already has (the files inside a
downloaded MLflow loader artifact), this machine's download cache (`MEDNNS_CACHE`, default
`~/.cache/mednns`, keyed by md5), and last a download from the registry's artifact store into that cache.
So an entry of an older zoo stays loadable after a newer checkpoint replaced the workspace file, inside
the checkout offline, and from any folder that reaches the MLflow server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable

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


def cache_dir() -> Path:
    """This machine's download cache of registered files (MEDNNS_CACHE, else $XDG_CACHE_HOME/mednns or
    ~/.cache/mednns)."""
    if os.environ.get("MEDNNS_CACHE"):
        return Path(os.environ["MEDNNS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mednns"


def _cached_file(md5: str) -> Path:
    return cache_dir() / "files" / "md5" / md5[:2] / md5[2:]


def _cached_dir(md5: str) -> Path:
    return cache_dir() / "dirs" / md5


def _into_cache(path: Path, target: Path) -> Path:
    """Copy `path` (a file or folder) to `target` atomically (a temporary name, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        staged = tmp / "x"
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, staged)
        try:
            os.replace(staged, target)
        except OSError:  # another process put it there first (a folder cannot replace a folder)
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


Fetch = Callable[[Path], Path]  # downloads into the given empty folder, returns the downloaded path


def _not_found(rel: str, md5: str, root: Path, state: str, fetch_error: str | None) -> MedNNSError:
    where = (f"the registry's copy could not be fetched ({fetch_error})" if fetch_error
             else "no registry copy was given")
    return MedNNSError(f"{rel} (md5 {md5[:8]}) not found in {root}: the workspace file {state}, the DVC cache "
                       f"lacks it and {where}; run `mednns zoo pull --rev <commit>` or `dvc pull` there")


def _fetched(fetch: Fetch | None, md5: str, check: Callable[[Path], str], target: Path) -> tuple[Path | None, str | None]:
    """(path in the download cache, None) after fetching and checking the content hash, or (None, why)."""
    if fetch is None:
        return None, None
    with tempfile.TemporaryDirectory(prefix="mednns-fetch-") as tmp:
        try:
            got = Path(fetch(Path(tmp)))
        except MedNNSError as e:
            return None, str(e)
        except Exception as e:  # noqa: BLE001 - MLflow / HTTP / S3 errors under many names
            return None, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        if not got.exists() or check(got) != md5:
            return None, f"the downloaded copy does not have hash {md5[:8]}"
        return _into_cache(got, target), None


def resolve_file(rel: str, md5: str, repo: str | Path | None = None, copies: Iterable[str | Path] = (),
                 fetch: Fetch | None = None) -> Path:
    """The file registered as (`rel`, `md5`) on this machine (see the module docstring for the order):
    `copies` are paths that may hold it, `fetch` downloads it when nothing here does."""
    root = Path(repo).resolve() if repo else find_repo()
    candidate = Path(rel) if Path(rel).is_absolute() else root / rel
    if candidate.is_file() and md5_file(candidate) == md5:
        return candidate
    cached = dvc_cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]
    if cached.is_file():
        return cached
    for copy in copies:
        if Path(copy).is_file() and md5_file(copy) == md5:
            return Path(copy)
    if _cached_file(md5).is_file():
        return _cached_file(md5)
    got, why = _fetched(fetch, md5, md5_file, _cached_file(md5))
    if got is not None:
        return got
    raise _not_found(rel, md5, root, "has other contents" if candidate.is_file() else "is missing", why)


def resolve_dir(rel: str, md5: str, repo: str | Path | None = None, copies: Iterable[str | Path] = (),
                fetch: Fetch | None = None) -> Path:
    """A registered folder (content hash `md5_dir`), found as `resolve_file` finds a file."""
    root = Path(repo).resolve() if repo else find_repo()
    candidate = Path(rel) if Path(rel).is_absolute() else root / rel
    for folder in (candidate, *map(Path, copies), _cached_dir(md5)):
        if folder.is_dir() and md5_dir(folder) == md5:
            return folder
    got, why = _fetched(fetch, md5, md5_dir, _cached_dir(md5))
    if got is not None:
        return got
    state = "has other contents" if candidate.is_dir() else "is missing"
    raise MedNNSError(f"{rel} (hash {md5[:8]}) not found in {root}: the folder {state} and "
                      + (f"the registry's copy could not be fetched ({why})" if why else "no registry copy was given")
                      + "; check out the matching version (`git checkout <commit> && dvc checkout`, or `dvc pull`)")
