"""What every stage script shares: its params section, logging, and one-line user errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import yaml

from mednns.errors import MedNNSError
from mednns.logs import setup_logging

PARAMS_FILE = Path("params.yaml")


def params(section: str | None = None):
    """All of params.yaml, or one top-level entry of it (a stage's section, or `datasets`)."""
    all_params = yaml.safe_load(PARAMS_FILE.read_text()) or {}
    return all_params if section is None else all_params.get(section) or {}


def run(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main(argv); a user error prints one line and exits 1."""
    setup_logging()
    try:
        main(sys.argv[1:])
    except MedNNSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
