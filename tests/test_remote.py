"""The DVC remote on a real S3-compatible server (moto): configure, push, pull into a fresh clone, load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from mednns.utils.errors import MedNNSError
from registry.lookup import build_from_tags, list_models, load_model, resolve_version
from registry.models import subnet_name, sync
from registry.artifacts import md5_file
from registry.client import Registry
from registry.remote import add_remote, pull_zoo
from test_registry import X, dvc_add, expected, git_commit, git_dvc_init, random_supernet, synthetic_zoo

BUCKET = "mednns-zoo"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(s3_server):
    import boto3

    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDS.items():
            mp.setenv(k, v)
        boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=BUCKET)
        yield s3_server


def test_remote_add_checks_the_bucket_and_keeps_secrets_local(s3, tmp_path):
    root = tmp_path / "p"
    git_dvc_init(root)
    with pytest.raises(MedNNSError, match="does not exist"):
        add_remote("s3://no-such-bucket/zoo", s3, repo=root)
    with pytest.raises(MedNNSError, match="unreachable"):
        add_remote(f"s3://{BUCKET}/zoo", "http://127.0.0.1:9", repo=root)
    with pytest.raises(MedNNSError, match="not an S3 URL"):
        add_remote("/tmp/folder", s3, repo=root)
    out = add_remote(f"s3://{BUCKET}/zoo", s3, repo=root, access_key_id="testing", secret_access_key="testing")
    assert out["credentials"] == ".dvc/config.local"
    config, local = (root / ".dvc/config").read_text(), (root / ".dvc/config.local").read_text()
    assert f"s3://{BUCKET}/zoo" in config and s3 in config and "secret" not in config
    assert "secret_access_key" in local
    assert subprocess.run(["git", "check-ignore", "-q", ".dvc/config.local"], cwd=root).returncode == 0
    res = run_cli("remote", "add", "s3://no-such-bucket/zoo", "--endpoint-url", s3, cwd=root, env=CREDS)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "does not exist" in res.stderr


def test_push_pull_a_versioned_zoo_into_a_fresh_clone_and_load_it_there(s3, mlflow_server, tmp_path):
    uri = mlflow_server.uri
    a = tmp_path / "machine-a"
    git_dvc_init(a)
    add_remote(f"s3://{BUCKET}/store", s3, repo=a)
    ckpt = a / "models/supernets/rtoy.pt"
    kept, kept_bn = {}, {}
    for version, seed in (("v1", 0), ("v2", 1)):
        random_supernet(ckpt, name="rtoy", seed=seed)
        synthetic_zoo(ckpt, 5, seed=seed)
        dvc_add(a, "models/supernets/rtoy.pt", "zoo/rtoy.parquet", "zoo/rtoy.bn.pt")
        git_commit(a, f"zoo {version}")
        subprocess.run(["git", "tag", version], cwd=a, check=True)
        pushed = subprocess.run(["dvc", "push"], cwd=a, capture_output=True, text=True, env={**os.environ, **CREDS})
        assert pushed.returncode == 0 and "pushed" in pushed.stdout, pushed.stderr
        sync(zoo_dir=a / "zoo", supernet_dir=a / "models/supernets", uri=uri, repo=a, progress=False)
        kept[version], kept_bn[version] = tmp_path / f"{version}.pt", tmp_path / f"{version}.bn.pt"
        shutil.copy2(ckpt, kept[version])
        shutil.copy2(a / "zoo/rtoy.bn.pt", kept_bn[version])

    b = tmp_path / "machine-b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    assert not (b / "models/supernets/rtoy.pt").exists()
    rows = list_models(dataset="rtoy", uri=uri)
    name = rows.name[rows.checkpoint_md5 == md5_file(kept["v2"])].iloc[0]
    latest = resolve_version(name, Registry(uri))
    # offline, from the checkout alone (no registry copy): the files are not here before a pull
    with pytest.raises(MedNNSError, match="zoo pull"):
        build_from_tags(latest.tags, repo=b)

    out = pull_zoo(repo=b)  # the checked-out revision (v2): workspace and cache
    assert out["workspace"] and (b / "models/supernets/rtoy.pt").is_file()
    # what it says it fetched is what came: 3 files (checkpoint, zoo table, its statistics), all downloaded
    assert out["outputs"] == ["models/supernets/rtoy.pt", "zoo/rtoy.bn.pt", "zoo/rtoy.parquet"]
    assert out["files"] == out["fetched"] == 3 and out["changed"] == 3
    assert out["fetched_bytes"] == sum((b / p).stat().st_size for p in out["outputs"])
    assert out["bytes"] == sum((b / p).stat().st_size for p in out["outputs"])
    assert out["missing"] == ["models/metaspace", "models/pretrained", "data/prepared"]  # this toy project has none
    again = pull_zoo(repo=b)
    assert again["fetched"] == 0 and again["changed"] == 0 and again["files"] == 3
    with torch.no_grad():
        assert torch.allclose(build_from_tags(latest.tags, repo=b)(X),
                              expected(kept["v2"], latest.tags["arch_json"], kept_bn["v2"]), atol=1e-6)
    v1 = [v for v in Registry(uri).search_versions(f"tags.checkpoint_md5 = '{md5_file(kept['v1'])}'")
          if v.tags["kind"] == "subnet"]
    old = f"{v1[0].name}/{v1[0].version}"
    with pytest.raises(MedNNSError, match="not found"):
        build_from_tags(v1[0].tags, repo=b)
    res = run_cli("zoo", "pull", "--rev", "v1", cwd=b, env={**CREDS, "MLFLOW_TRACKING_URI": uri})
    assert res.returncode == 0, res.stderr
    assert "3 file(s)" in res.stdout and "downloaded 3 file(s)" in res.stdout, res.stdout
    with torch.no_grad():
        v = resolve_version(old, Registry(uri))
        assert torch.allclose(build_from_tags(v.tags, repo=b)(X), expected(kept["v1"], v.tags["arch_json"], kept_bn["v1"]),
                              atol=1e-6)
        # by name through the registry it loads the same from the checkout
        assert torch.allclose(load_model(old, repo=b, uri=uri)(X), expected(kept["v1"], v.tags["arch_json"], kept_bn["v1"]),
                              atol=1e-6)
    assert subnet_name("rtoy", v.tags["arch_id"]) == old.split("/")[0]


def _without_secret() -> dict:
    return {k: v for k, v in os.environ.items() if k != "AWS_SECRET_ACCESS_KEY"}


def test_remote_add_takes_the_secret_from_the_environment_never_from_an_option(s3, tmp_path):
    root = tmp_path / "p"
    git_dvc_init(root)
    url = f"s3://{BUCKET}/zoo"
    flag = run_cli("remote", "add", url, "--endpoint-url", s3, "--access-key-id", "testing",
                   "--secret-access-key", "testing", cwd=root)
    assert flag.returncode == 2 and "--secret-access-key" in flag.stderr  # no such option
    exe = str(Path(sys.executable).with_name("mednns"))
    no_secret = subprocess.run([exe, "remote", "add", url, "--endpoint-url", s3, "--access-key-id", "testing"],
                               cwd=root, env=_without_secret(), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=300)
    assert no_secret.returncode == 1 and "Traceback" not in no_secret.stderr
    assert len(no_secret.stderr.strip().splitlines()) == 1 and "AWS_SECRET_ACCESS_KEY" in no_secret.stderr
    ok = run_cli("remote", "add", url, "--endpoint-url", s3, "--access-key-id", "testing", cwd=root,
                 env={"AWS_SECRET_ACCESS_KEY": "from-the-environment"})
    assert ok.returncode == 0, ok.stderr
    local = (root / ".dvc/config.local").read_text()
    assert "from-the-environment" in local and "from-the-environment" not in (root / ".dvc/config").read_text()


def test_remote_add_asks_for_the_secret_in_a_terminal_without_echo(s3, tmp_path):
    import fcntl
    import pty
    import select
    import termios
    import time

    root = tmp_path / "p"
    git_dvc_init(root)
    master, slave = pty.openpty()

    def own_terminal():  # the pty becomes the command's controlling terminal, as a shell's is
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    exe = str(Path(sys.executable).with_name("mednns"))
    proc = subprocess.Popen([exe, "remote", "add", f"s3://{BUCKET}/zoo", "--endpoint-url", s3, "--access-key-id",
                             "testing"], cwd=root, env=_without_secret(), stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=own_terminal)
    os.close(slave)
    seen, sent, deadline = b"", False, time.time() + 300
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not sent and b"Secret access key" in seen:
            os.write(master, b"typed-secret-42\n")
            sent = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=60)
    os.close(master)
    assert sent and proc.returncode == 0, seen.decode(errors="replace")[-2000:]
    assert b"typed-secret-42" not in seen  # not echoed
    assert "typed-secret-42" in (root / ".dvc/config.local").read_text()
