"""User-facing errors: the CLI prints their message on one line and exits 1, with no traceback."""


class MedNNSError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable service)."""


class DataError(MedNNSError):
    """A dataset that cannot be found, read or trusted."""
