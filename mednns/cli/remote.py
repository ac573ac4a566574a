"""`mednns remote`: the DVC remote that carries the versioned zoo."""

from __future__ import annotations

import sys

import click

from mednns.cli.output import console
from mednns.utils.errors import MedNNSError


@click.group()
def remote() -> None:
    """The DVC remote that carries the versioned zoo (S3 or S3-compatible)."""


@remote.command("add")
@click.argument("url")
@click.option("--endpoint-url", help="S3-compatible endpoint (MinIO, moto, ...).")
@click.option("--name", default="storage", show_default=True, help="DVC remote name.")
@click.option("--default/--no-default", default=True, show_default=True, help="Make it the default remote.")
@click.option("--access-key-id", help="Keep credentials in .dvc/config.local (never committed); the secret key "
              "comes from AWS_SECRET_ACCESS_KEY or, in a terminal, a prompt. Without it: the environment.")
@click.option("--no-check", is_flag=True, help="Do not check the bucket first.")
def remote_add(url, endpoint_url, name, default, access_key_id, no_check) -> None:
    """Configure URL (s3://bucket/prefix) as the DVC remote, after checking the bucket answers.

    The secret key is never an option: an option would put it in the shell history and the process list."""
    import os

    from registry.remote import add_remote

    secret = None
    if access_key_id:
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not secret:
            if not sys.stdin.isatty():
                raise MedNNSError("--access-key-id needs its secret key: set AWS_SECRET_ACCESS_KEY, or run the "
                                  "command in a terminal to be asked for it")
            secret = click.prompt("Secret access key", hide_input=True)
    out = add_remote(url, endpoint_url, name=name, default=default, access_key_id=access_key_id,
                     secret_access_key=secret, check=not no_check)
    console.print(f"remote {out['name']!r} -> {url}" + (f" at {endpoint_url}" if endpoint_url else "")
                  + f" (credentials: {out['credentials']}); `dvc push` / `mednns zoo pull` move the zoo")
