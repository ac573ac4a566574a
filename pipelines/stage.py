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


def config(section: str, cls: type[T], changed: dict[str, dict] | None = None) -> T:
    """The params.yaml `section` as `cls`, with this run's `changed` settings (`changed_settings`) over it;
    unknown keys and wrong types are one-line errors."""
    return from_section(cls, {**params(section), **(changed or {}).get(section, {})}, section)


def changed_settings(items: list[str], sections: tuple[str, ...]) -> dict[str, dict]:
    """`SECTION.KEY=VALUE` strings (values as YAML) -> {section: {key: value}}: an ad-hoc run's changes to
    params.yaml, for an ablation without editing it (outside DVC, whose runs read params.yaml alone)."""
    out: dict[str, dict] = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, dot, key = name.partition(".")
        if not (sep and dot and key) or section not in sections:
            raise MedNNSError(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {', '.join(sections)} "
                              "(e.g. --set finetune.backbone_lr_scale=0.3)")
        try:
            out.setdefault(section, {})[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise MedNNSError(f"--set {item!r}: {value!r} is not a YAML value") from None
    return out


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
