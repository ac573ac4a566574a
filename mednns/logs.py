"""Logging for commands and stages: one readable line per step, on stderr."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | int | None = None) -> None:
    from rich.logging import RichHandler

    level = level or os.environ.get("MEDNNS_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False)], force=True)
    for noisy in ("alembic", "urllib3", "botocore", "mlflow.store", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
