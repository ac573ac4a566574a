"""User-facing errors, and the one place that turns an expected failure into one line.

The contract of every command (`mednns ...` and the DVC stage scripts): an expected failure (bad input,
a missing or damaged file, an unreachable server, a full disk) prints one line naming the file or value
and the fix, and exits 1; wrong usage exits 2 (click and argparse do that); anything else is a bug and
keeps its traceback. `--debug` or MEDNNS_DEBUG=1 shows the traceback of every error.

`explain` decides what is expected; `user_message` adds the debug switch and logs the original error
at debug level (`MEDNNS_LOG_LEVEL=DEBUG` shows it). The CLI's root group and `pipelines.stage.run` are
its only callers, so a new command or stage gets the contract without code of its own.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

log = logging.getLogger(__name__)

DEBUG_ENV = "MEDNNS_DEBUG"
MAX_LINE = 600


class MedNNSError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable service)."""


class DataError(MedNNSError):
    """A dataset that cannot be found, read or trusted."""


def debug_enabled(flag: bool = False) -> bool:
    return bool(flag) or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """Whitespace (newlines too) collapsed, cut at `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# What an OSError's errno means for the user, and what to do about it.
_OS_FIX = {
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere, then re-run"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write elsewhere, then re-run"),
    errno.EACCES: ("permission denied", "check the file's permissions or choose another path"),
    errno.EPERM: ("operation not permitted", "check the file's permissions or choose another path"),
    errno.EROFS: ("read-only file system", "write somewhere writable"),
    errno.ENOENT: ("no such file or folder", "check the path (relative paths start at the current folder)"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("is a folder, not a file", "give a file path"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or close other programs"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
}


def _module_class(exc: BaseException, module: str, name: str) -> bool:
    """isinstance(exc, module.name) without importing `module`: an exception of a library that was
    never imported cannot have been raised."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


def _network(exc: BaseException) -> str | None:
    if _module_class(exc, "requests.exceptions", "RequestException") or \
            _module_class(exc, "urllib3.exceptions", "HTTPError") or \
            isinstance(exc, (ConnectionError, TimeoutError)):
        request = getattr(exc, "request", None)
        url = getattr(request, "url", None) or getattr(exc, "url", None)
        where = f" {url}" if url else ""
        return (f"network error reaching{where or ' a server'} ({type(exc).__name__}); check that the server "
                "is running and reachable, then re-run")
    return None


def os_error_line(exc: OSError, path=None) -> str:
    """'<file>: <what happened>; <what to do>' for an OSError; `path` names the file the user knows (a
    temporary file's name would mean nothing to them), else the error's own file name."""
    what, fix = _OS_FIX.get(exc.errno, (exc.strerror or type(exc).__name__, "check the path and re-run"))
    name = path if path is not None else exc.filename
    where = f"{name}: " if name is not None else ""
    return one_line(f"{where}{what}; {fix}")


# MLflow error codes that are the server's state or the network's, not a mistake in our requests.
_MLFLOW_SERVER_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "PERMISSION_DENIED",
                        "UNAUTHENTICATED", "ENDPOINT_NOT_FOUND", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED",
                        "ABORTED", "CUSTOMER_UNAUTHORIZED"}


def explain(exc: BaseException) -> str | None:
    """One line for an expected failure; None for a bug (or for click's own exceptions)."""
    if isinstance(exc, MedNNSError):
        return one_line(str(exc))
    if isinstance(exc, MemoryError):
        return ("out of memory; the data does not fit this machine's memory: use a smaller dataset or fewer "
                "images, or a machine with more memory")
    net = _network(exc)
    if net:
        return net
    if isinstance(exc, OSError):
        return os_error_line(exc)
    if _module_class(exc, "mlflow.exceptions", "MlflowException"):
        code = getattr(exc, "error_code", None)
        if code in _MLFLOW_SERVER_CODES:
            text = getattr(exc, "message", None) or str(exc)
            return one_line(f"MLflow ({code}): {text}; check the server (MLFLOW_TRACKING_URI) and re-run: "
                            "registration resumes where it stopped", 300)
        return None
    if _module_class(exc, "botocore.exceptions", "BotoCoreError") or \
            _module_class(exc, "botocore.exceptions", "ClientError"):
        return one_line(f"S3: {exc}; check the endpoint, bucket and credentials", 300)
    return None


def user_message(exc: BaseException, debug: bool = False) -> str | None:
    """The line to print for `exc`, or None when the caller must re-raise it (a bug, click's own
    exceptions, or any error in debug mode)."""
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
        return None
    message = explain(exc)
    if message is None or debug_enabled(debug):
        return None
    log.debug("%s", message, exc_info=exc)
    return message
