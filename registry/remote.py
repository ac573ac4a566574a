"""The DVC remote that carries a versioned zoo between machines (S3 or any S3-compatible store).

`add_remote` checks the bucket with boto3 first (one clear line when it cannot be reached), then writes
the remote's URL and endpoint to `.dvc/config` (committed, so a clone knows where its data lives) and
credentials, only when given explicitly, to `.dvc/config.local` (git-ignored by DVC). Without them,
DVC and boto3 read the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment or profile.

`pull_zoo(rev)` brings the supernet checkpoints and zoo tables of a git revision into the local DVC
cache (and into the workspace when `rev` is the checked-out one): registry entries of that revision
then load here, since they find their checkpoint by md5 in the cache (registry.artifacts).
"""

from __future__ import annotations

import logging
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from mednns import MedNNSError
from registry.artifacts import find_repo

log = logging.getLogger(__name__)

ZOO_TARGETS = ("models/supernets", "zoo")


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


def pull_zoo(rev: str | None = None, remote: str | None = None, repo: str | Path | None = None,
             targets=ZOO_TARGETS) -> dict:
    """Fetch the supernets and zoo tables of git revision `rev` (default: the checked-out one).

    The checked-out revision is pulled into the workspace; another revision only into the DVC
    cache, which is where registry entries of that revision find their checkpoints.
    """
    root = Path(repo).resolve() if repo else find_repo()
    commit = _rev_commit(root, rev) if rev else _head(root)
    with _dvc_repo(root) as r:
        # DVC outputs (of .dvc files or dvc.yaml stages) inside the target folders
        outs = [Path(o.fs_path).relative_to(root).as_posix() for o in r.index.outs]
        present = [o for o in outs if any(o == t or o.startswith(t.rstrip("/") + "/") for t in targets)]
        try:
            if rev is None or commit == _head(root):
                stats = r.pull(targets=present or None, remote=remote)
                fetched = int(stats.get("fetched", 0)) if isinstance(stats, dict) else int(stats or 0)
                return {"rev": commit, "fetched": fetched, "workspace": True}
            # every output of that revision (its outputs may sit elsewhere than today's)
            n = r.fetch(revs=[commit], remote=remote, workspace=False)
            return {"rev": commit, "fetched": int(n or 0), "workspace": False}
        except MedNNSError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _dvc_error(e, "dvc pull" if rev is None else f"dvc fetch of {rev}") from None
