"""The DVC remote that carries a versioned zoo between machines (S3 or any S3-compatible store).

`add_remote` checks the bucket with boto3 first (one clear line when it cannot be reached), then writes
the remote's URL and endpoint to `.dvc/config` (committed, so a clone knows where its data lives) and
credentials, only when given explicitly, to `.dvc/config.local` (git-ignored by DVC). Without them,
DVC and boto3 read the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment or profile.

`pull_zoo(rev)` brings everything `mednns select`, `load_model` and `mednns export` need of a git
revision into the local DVC cache (and into the workspace when `rev` is the checked-out one): the
supernet checkpoints, the zoo tables with their BatchNorm statistics, the meta-space, and the prepared
datasets whose val images verify an export. Registry entries of that revision then load here offline,
since they find their files by md5 in the cache (registry.artifacts).
"""

from __future__ import annotations

import logging
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from mednns import MedNNSError
from registry.artifacts import dvc_cache_dir, find_repo

log = logging.getLogger(__name__)

ZOO_TARGETS = ("models/supernets", "zoo", "models/metaspace", "models/pretrained")   # select and load_model
DATA_TARGETS = ("data/prepared",)                               # export's verification images


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise MedNNSError(f"{url}: not an S3 URL; expected s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


def check_bucket(url: str, endpoint_url: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, region: str | None = None) -> None:
    """Raise MedNNSError (one line) unless the bucket of `url` answers with these credentials."""
    import boto3
    import botocore.exceptions as bex
    from botocore.config import Config

    bucket, _ = parse_s3_url(url)
    where = endpoint_url or "AWS S3"
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
        region_name=region or "us-east-1",
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}))
    try:
        client.head_bucket(Bucket=bucket)
    except bex.NoCredentialsError:
        raise MedNNSError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass "
                          "--access-key-id (kept in .dvc/config.local; its secret key from AWS_SECRET_ACCESS_KEY "
                          "or a prompt)") from None
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as e:
        raise MedNNSError(f"S3 endpoint {where} is unreachable ({type(e).__name__})") from None
    except bex.ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise MedNNSError(f"bucket {bucket!r} does not exist at {where}; create it or fix the URL") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise MedNNSError(f"access to bucket {bucket!r} at {where} denied ({code}); "
                              "check the credentials") from None
        raise MedNNSError(f"bucket {bucket!r} at {where}: {code or e}") from None
    except bex.BotoCoreError as e:
        raise MedNNSError(f"S3 endpoint {where}: {type(e).__name__}: {e}") from None


@contextmanager
def _dvc_repo(repo: str | Path | None):
    from dvc.repo import Repo

    root = Path(repo).resolve() if repo else find_repo()
    if not (root / ".dvc").is_dir():
        raise MedNNSError(f"{root} is not a DVC project (no .dvc folder); run `dvc init` there")
    # DVC resolves targets and collects the workspace relative to the working directory.
    cwd = os.getcwd()
    os.chdir(root)
    try:
        r = Repo(str(root))
        try:
            yield r
        finally:
            r.close()
    finally:
        os.chdir(cwd)


def add_remote(url: str, endpoint_url: str | None = None, name: str = "storage", default: bool = True,
               access_key_id: str | None = None, secret_access_key: str | None = None,
               repo: str | Path | None = None, check: bool = True) -> dict:
    """Configure (or reconfigure) DVC remote `name` at `url`; what `mednns remote add` runs."""
    parse_s3_url(url)
    if bool(access_key_id) != bool(secret_access_key):
        raise MedNNSError("an access key id needs its secret access key, and the reverse; give both, or neither "
                          "(to use the environment)")
    if check:
        check_bucket(url, endpoint_url, access_key_id, secret_access_key)
    with _dvc_repo(repo) as r:
        with r.config.edit("repo") as conf:
            section = {"url": url}
            if endpoint_url:
                section["endpointurl"] = endpoint_url
            conf.setdefault("remote", {})[name] = section
            if default:
                conf.setdefault("core", {})["remote"] = name
        with r.config.edit("local") as conf:
            remotes = conf.setdefault("remote", {})
            if access_key_id:
                remotes[name] = {"access_key_id": access_key_id, "secret_access_key": secret_access_key}
            else:
                remotes.pop(name, None)
    return {"name": name, "url": url, "endpointurl": endpoint_url, "default": default,
            "credentials": ".dvc/config.local" if access_key_id else "environment"}


def _dvc_error(e: Exception, what: str) -> MedNNSError:
    text = " ".join(str(e).split())
    return MedNNSError(f"{what} failed: {text[:300]}")


def _head(root: Path) -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _rev_commit(root: Path, rev: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=root, capture_output=True,
                         text=True)
    if out.returncode:
        raise MedNNSError(f"unknown git revision {rev!r} in {root}")
    return out.stdout.strip()


def _under(path: str, targets) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def _outs(r, root: Path, targets) -> list[tuple[str, int, int]]:
    """(path, files, bytes) of the DVC outputs under `targets` in the index `r` has now."""
    out = []
    for o in r.index.outs:
        path = Path(o.fs_path)
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:  # at a git revision the repo is the root of DVC's git filesystem
            rel = path.as_posix().lstrip("/")
        if _under(rel, targets):
            meta = getattr(o, "meta", None)
            out.append((rel, int(getattr(meta, "nfiles", None) or 1), int(getattr(meta, "size", None) or 0)))
    return sorted(out)


def _cache_objects(root: Path) -> dict[str, int]:
    """File objects (not folder manifests) of the local DVC cache: name -> bytes."""
    base = dvc_cache_dir(root) / "files" / "md5"
    if not base.is_dir():
        return {}
    return {p.parent.name + p.name: p.stat().st_size for p in base.glob("*/*") if not p.name.endswith(".dir")}


def pull_zoo(rev: str | None = None, remote: str | None = None, repo: str | Path | None = None,
             targets=ZOO_TARGETS, data: bool = True) -> dict:
    """Fetch what select, load_model and export need of git revision `rev` (default: the checked-out
    one): `targets`, and with `data` the prepared datasets too.

    The checked-out revision is pulled into the workspace; another revision only into the DVC cache,
    which is where registry entries of that revision find their files. Returns what it did: the
    outputs, their files and bytes, the file objects and bytes that came into the local DVC cache (counted
    there: the rest were in it already, or share content), how many workspace files changed, and the
    targets that revision has no outputs under.
    """
    root = Path(repo).resolve() if repo else find_repo()
    commit = _rev_commit(root, rev) if rev else _head(root)
    wanted = tuple(targets) + (DATA_TARGETS if data else ())
    checked_out = rev is None or commit == _head(root)
    with _dvc_repo(root) as r:
        try:
            if checked_out:
                outs = _outs(r, root, wanted)
            else:
                outs = []
                for _ in r.brancher(revs=[commit], workspace=False):
                    outs = _outs(r, root, wanted)
            paths = [o[0] for o in outs]
            report = {"rev": commit, "workspace": checked_out, "outputs": paths, "files": sum(o[1] for o in outs),
                      "bytes": sum(o[2] for o in outs), "missing": [t for t in wanted if not any(_under(p, [t]) for p in paths)]}
            before = _cache_objects(root)
            changed = 0
            if paths and checked_out:
                result = r.pull(targets=paths, remote=remote)
                stats = result.get("stats", result) if isinstance(result, dict) else {}
                changed = sum(v if isinstance(v, int) else len(v or ()) for k, v in stats.items()
                              if k in ("added", "modified"))
            elif paths:
                r.fetch(targets=paths, revs=[commit], remote=remote, workspace=False)
            new = {k: v for k, v in _cache_objects(root).items() if k not in before}
            return {**report, "fetched": len(new), "fetched_bytes": sum(new.values()), "changed": changed}
        except MedNNSError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _dvc_error(e, "dvc pull" if checked_out else f"dvc fetch of {rev}") from None
