"""Options and argument checks shared by several commands (checked before torch is imported)."""

from __future__ import annotations

import click

from mednns.utils.errors import MedNNSError

size_option = click.option("--size", type=click.Choice(["28", "64", "128", "224"]), default="28",
                           show_default=True, help="MedMNIST image size (for MedMNIST names).")
offline_option = click.option("--no-download", is_flag=True, help="Never download; fail if the file is missing.")
task_option = click.option("--task", type=click.Choice(["multi-class", "binary-class", "multi-label",
                                                        "ordinal-regression"]),
                           help="Task of your own npz (inferred from its labels if omitted).")
classes_option = click.option("--num-classes", type=click.IntRange(2, 10_000),
                              help="Classes of your own npz (inferred from its labels if omitted; needed when a "
                                   "class occurs in no split).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


def device_name(ctx, param, value: str) -> str:
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: use cpu, cuda or cuda:<index>")
    return value


def onnx_file(ctx, param, value: str | None) -> str | None:
    from pathlib import Path

    if value is None:
        return None
    path = Path(value)
    if path.suffix != ".onnx":
        raise click.BadParameter(f"{value!r}: an ONNX file name must end in .onnx (e.g. {path.stem or 'model'}.onnx)")
    writable_file(path)
    return value


def card_file(ctx, param, value: str | None) -> str | None:
    from pathlib import Path

    if value is not None:
        writable_file(Path(value))
    return value


def writable_file(path) -> None:
    if path.is_dir():
        raise click.BadParameter(f"{str(path)!r} is a folder; give a file name")
    for folder in path.parents:
        if folder.exists() and not folder.is_dir():
            raise click.BadParameter(f"{str(path)!r}: {folder} is a file, not a folder")


def existing_folder(what: str, path: str, option: str, fix: str) -> None:
    from pathlib import Path

    if not Path(path).is_dir():
        raise MedNNSError(f"{what} folder {path!r} not found (relative paths start at the current folder, "
                          f"{Path.cwd()}); give it with {option}, or {fix}")
