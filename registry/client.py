"""One MlflowClient for the registry, with transient-error retries and one-line user errors."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from mednns import MedNNSError
from registry.tracking import check_reachable, literal, tracking_uri  # noqa: F401 - literal: for the registry

log = logging.getLogger(__name__)

ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


def error_code(e: BaseException) -> str | None:
    return getattr(e, "error_code", None)


def _transient(e: BaseException) -> bool:
    import requests

    if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError)):
        return True
    code = error_code(e)
    text = str(e)
    # MLflow sets an alias by check-then-insert: two writers setting one alias at once collide on its
    # unique key, and a retry finds the other's row and updates it.
    if "registered_model_aliases" in text and "unique" in text.lower():
        return True
    return code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE") and (
        "locked" in text or "Max retries" in text or "Connection" in text or "timed out" in text
        or "API request" in text)


class Registry:
    """The model registry at `uri` (default: MLFLOW_TRACKING_URI or the embedded mlflow.db)."""

    def __init__(self, uri: str | None = None, retries: int = 3):
        from mlflow import MlflowClient

        self.uri = uri or tracking_uri()
        check_reachable(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.retries = retries

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def call(self, fn: Callable, *args, ok: tuple[str, ...] = (), **kwargs) -> Any:
        """fn(*args, **kwargs), retried on transient errors; an MlflowException whose code is in `ok`
        returns None; an unreachable server raises MedNNSError."""
        from mlflow.exceptions import MlflowException

        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except MlflowException as e:
                if error_code(e) in ok:
                    return None
                if not _transient(e) or attempt == self.retries:
                    if _transient(e):
                        check_reachable(self.uri)
                    raise
            except Exception as e:  # noqa: BLE001 - requests / urllib3 errors under many names
                if not _transient(e) or attempt == self.retries:
                    check_reachable(self.uri)
                    if _transient(e):
                        raise MedNNSError(f"MLflow server {self.uri} failed ({type(e).__name__}); "
                                          "re-run: registration resumes where it stopped") from None
                    raise
            time.sleep(0.2 * 2 ** attempt)
            check_reachable(self.uri)
        raise AssertionError("unreachable")

    def _paged(self, search, filter_string: str, page: int) -> list:
        out, token = [], None
        while True:
            res = self.call(search, filter_string, max_results=page, page_token=token)
            out.extend(res)
            token = res.token
            if not token:
                return out

    def search_versions(self, filter_string: str, page: int = 20000) -> list:
        return self._paged(self.client.search_model_versions, filter_string, page)

    def search_models(self, filter_string: str, page: int = 1000) -> list:
        return self._paged(self.client.search_registered_models, filter_string, page)
