"""What every stage script shares: its params section as a config, logging, and one-line user errors.

A stage script parses its paths from the command line (`dvc.yaml` writes each path once, in the stage's
`cmd`, `deps` and `outs`), reads its params section through `config`, calls the library and writes
its outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, TypeVar

import yaml

from mednns import MedNNSError, from_section
from mednns.utils.errors import user_message
from mednns.utils.logs import setup_logging

PARAMS_FILE = Path("params.yaml")
T = TypeVar("T")


def params(section: str | None = None):
    """All of params.yaml, or one top-level entry of it (a stage's section, or `datasets`)."""
    try:
        all_params = yaml.safe_load(PARAMS_FILE.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise MedNNSError(f"{PARAMS_FILE}: cannot read ({type(e).__name__}); run the stage from the project "
                          "folder, where dvc.yaml is") from None
    return all_params if section is None else all_params.get(section) or {}


def config(section: str, cls: type[T]) -> T:
    """The params.yaml `section` as `cls` (unknown keys and wrong types are one-line errors)."""
    return from_section(cls, params(section), section)


def datasets() -> list[str]:
    return [str(d) for d in params("datasets")]


def run(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main(argv) under the commands' error contract (`mednns.utils.errors`): an expected
    failure prints one line and exits 1, a bug keeps its traceback, MEDNNS_DEBUG=1 shows every one."""
    try:
        setup_logging()
        main(sys.argv[1:])
    except Exception as e:
        message = user_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
