"""Where a dataset comes from: a MedMNIST flag (INFO, local file or download) or a user's npz."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mednns.utils.errors import DataError
from mednns.utils.io import atomic_path

log = logging.getLogger(__name__)

MEDMNIST_2D = (
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)
SIZES = (28, 64, 128, 224)
# Names end up in paths (data/prepared/<name>/, registry names): keep them to a safe alphabet.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class Source:
    """A resolved dataset: the npz to read and, for MedMNIST flags, medmnist's INFO entry."""

    name: str
    path: Path
    info: dict | None  # None for a user's own npz


@lru_cache(maxsize=1)
def _medmnist_info() -> dict:
    """medmnist's INFO, read from its own module file: `import medmnist` imports torch and its dataset
    classes first, seconds that a `mednns data check` would spend for one dict."""
    import importlib.util

    package = importlib.util.find_spec("medmnist")
    if package is None or not package.submodule_search_locations:
        raise DataError("the medmnist package is not installed; run `make setup`")
    spec = importlib.util.spec_from_file_location(
        "_mednns_medmnist_info", Path(next(iter(package.submodule_search_locations))) / "info.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INFO


def medmnist_info(flag: str) -> dict:
    return _medmnist_info()[flag]


def data_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get("MEDNNS_DATA_DIR") or Path.home() / ".medmnist").expanduser()


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise DataError(
            f"invalid dataset name {name!r}: use lower-case letters, digits, '_' or '-' (at most 64)"
        )
    return name


def file_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def resolve(name_or_path: str | Path, size: int = 28, root: str | Path | None = None,
            download: bool = True) -> Source:
    """Find the npz for a MedMNIST flag, a name under the data root, or an explicit path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".npz") or os.sep in text or path.exists():
        if path.is_dir():
            raise DataError(f"{path}: a folder, not an npz file; give the path of the .npz file")
        if not path.is_file():
            raise DataError(f"{path}: file not found (relative paths start at the current folder, "
                            f"{Path.cwd()})")
        flag = _medmnist_flag_of(path)
        return Source(name=flag or _name_from_path(path), path=path,
                      info=medmnist_info(flag) if flag else None)

    flag = text.lower()
    if size not in SIZES:
        raise DataError(f"unsupported image size {size}: MedMNIST provides {', '.join(map(str, SIZES))}")
    folder = data_root(root)
    if flag in MEDMNIST_2D:
        target = folder / file_name(flag, size)
        if not target.is_file():
            if not download:
                raise DataError(f"{target}: file not found; set MEDNNS_DATA_DIR to a folder holding "
                                f"{target.name}, or allow the download")
            _download(flag, size, target)
        return Source(name=flag, path=target, info=medmnist_info(flag))

    # A user's dataset dropped into the data root behaves like a named dataset.
    own = folder / f"{flag}.npz"
    if _NAME_RE.match(flag) and own.is_file():
        return Source(name=flag, path=own, info=None)
    raise DataError(
        f"unknown dataset {text!r}: expected a MedMNIST 2D name ({', '.join(MEDMNIST_2D)}), "
        f"a file <name>.npz in {folder}, or a path to an .npz file"
    )


def _medmnist_flag_of(path: Path) -> str | None:
    """'bloodmnist.npz' or 'bloodmnist_64.npz' is medmnist's own file: use its INFO."""
    m = re.fullmatch(r"([a-z]+)(?:_(\d+))?", path.stem)
    if m and m.group(1) in MEDMNIST_2D and (m.group(2) is None or int(m.group(2)) in SIZES):
        return m.group(1)
    return None


def _name_from_path(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9_\-]+", "_", path.stem.lower()).strip("_-") or "dataset"
    return validate_name(stem[:64])


def _download(flag: str, size: int, target: Path) -> None:
    info = medmnist_info(flag)
    suffix = "" if size == 28 else f"_{size}"
    url, md5 = info[f"url{suffix}"], info[f"MD5{suffix}"]
    log.info("downloading %s (%d px) from %s", flag, size, url)
    try:
        with atomic_path(target) as tmp:
            digest = hashlib.md5()
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                while block := resp.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != md5:
                raise DataError(f"{url}: downloaded file has md5 {digest.hexdigest()}, expected {md5}; retry")
    except (urllib.error.URLError, OSError) as e:
        raise DataError(
            f"cannot download {flag} from {url} ({e}); when offline, put {target.name} in a folder "
            f"and set MEDNNS_DATA_DIR to it"
        ) from None
