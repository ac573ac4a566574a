"""Logging for commands and stages: one readable line per step, on stderr."""

from __future__ import annotations

import logging
import os
import sys

from mednns.utils.errors import MedNNSError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setup_logging(level: str | int | None = None) -> None:
    level = level or os.environ.get("MEDNNS_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        if level.upper() not in LEVELS:
            raise MedNNSError(f"log level {level!r} (MEDNNS_LOG_LEVEL or --log-level): use one of {', '.join(LEVELS)}")
        level = level.upper()
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False)
        fmt = "%(message)s"
    else:
        # Plain lines when piped (DVC, CI, files): rich would wrap them at 80 columns.
        handler, fmt = logging.StreamHandler(), "%(asctime)s %(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("alembic", "urllib3", "botocore", "mlflow.store", "git", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
