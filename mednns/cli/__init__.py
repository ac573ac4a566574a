"""The `mednns` command line: a thin shell over the library (the one place that may reach `registry`).

One module per command or command group; this one holds the root group, which turns every expected
failure into one line and exit code 1.
"""

from __future__ import annotations

import sys

import click

from mednns.cli import data, export, registry, remote, selection, zoo
from mednns.cli.selection import DEFAULT_PRETRAINED, select_cmd
from mednns.utils.errors import DEBUG_ENV, user_message
from mednns.utils.logs import LEVELS as LOG_LEVELS, setup_logging

__all__ = ["DEFAULT_PRETRAINED", "cli", "main", "select_cmd"]


class _Group(click.Group):
    """The root group: every expected failure of any subcommand becomes one line and exit code 1
    (`mednns.utils.errors`); a bug keeps its traceback, and `--debug` keeps it for every error."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            message = user_message(e, debug=ctx.params.get("debug", False))
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mednns")
@click.option("--log-level", default="INFO", show_default=True, envvar="MEDNNS_LOG_LEVEL",
              type=click.Choice(LOG_LEVELS, case_sensitive=False), help="Logging level [MEDNNS_LOG_LEVEL].")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV,
              help=f"Show the traceback of every error, expected ones too [{DEBUG_ENV}=1].")
def cli(log_level: str, debug: bool) -> None:
    """MedNNS: pick the architecture and pretrained weights for a new medical-imaging dataset."""
    setup_logging(log_level.upper())


for command in (data.data, selection.select_cmd, zoo.zoo, registry.registry, remote.remote, export.export_cmd):
    cli.add_command(command)


def main() -> None:
    sys.exit(cli.main(prog_name="mednns", standalone_mode=True))
