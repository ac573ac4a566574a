"""The `mednns` command line: a thin shell over the library (the one place that may reach `registry`)."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from mednns.errors import MedNNSError

console = Console()


class _Group(click.Group):
    """Turns user errors into one line and exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MedNNSError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mednns")
@click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
def cli(log_level: str) -> None:
    """MedNNS: pick the architecture and pretrained weights for a new medical-imaging dataset."""
    from mednns.logs import setup_logging

    setup_logging(log_level)


@cli.group(cls=_Group)
def data() -> None:
    """Inspect, validate and prepare datasets (MedMNIST names or your own npz)."""


_size = click.option("--size", type=click.Choice(["28", "64", "128", "224"]), default="28",
                     show_default=True, help="MedMNIST image size (for MedMNIST names).")
_offline = click.option("--no-download", is_flag=True, help="Never download; fail if the file is missing.")
_task = click.option("--task", type=click.Choice(["multi-class", "binary-class", "multi-label",
                                                  "ordinal-regression"]),
                     help="Task of your own npz (inferred from its labels if omitted).")
_classes = click.option("--num-classes", type=int, help="Classes of your own npz (inferred if omitted).")


@data.command("info")
@click.argument("dataset")
@_size
@_offline
@_task
@_classes
def data_info(dataset: str, size: str, no_download: bool, task: str | None, num_classes: int | None) -> None:
    """Print the spec and the split and class counts of DATASET (a name or an .npz path)."""
    from mednns.data import SPLITS, load_dataset

    ds = load_dataset(dataset, size=int(size), download=not no_download, task=task,
                      num_classes=num_classes)
    spec = ds.spec
    console.print(f"[bold]{spec.name}[/]  task={spec.task.value}  channels={spec.channels}  "
                  f"classes={spec.num_classes}  size={spec.image_size}px  source={spec.source}")
    table = Table("class", *SPLITS, title=f"{spec.name}: images per split and class")
    counts = {s: ds.class_counts(s) for s in SPLITS}
    for i, label in enumerate(spec.label_names):
        table.add_row(f"{i}: {label[:40]}", *(str(counts[s][i]) for s in SPLITS))
    table.add_section()
    table.add_row("total", *(str(spec.splits[s]) for s in SPLITS), style="bold")
    console.print(table)


@data.command("check")
@click.argument("npz")
@_task
@_classes
def data_check(npz: str, task: str | None, num_classes: int | None) -> None:
    """Validate NPZ (a MedMNIST-layout file); exit 0 when it is usable, 1 otherwise."""
    from mednns.data import load_dataset

    ds = load_dataset(npz, download=False, task=task, num_classes=num_classes)
    console.print(f"ok: {npz} ({ds.spec.task.value}, {ds.spec.num_classes} classes, "
                  f"{ds.spec.channels} channel(s), {ds.spec.image_size}px, splits {ds.spec.splits})")


@data.command("prepare")
@click.argument("dataset")
@click.option("--out", "out_dir", type=click.Path(), help="Output folder [data/prepared/<name>].")
@_size
@_offline
def data_prepare(dataset: str, out_dir: str | None, size: str, no_download: bool) -> None:
    """Validate DATASET and write a prepared copy with its manifest (what the `prepare` stage runs)."""
    from mednns.data import prepare, resolve

    name = resolve(dataset, size=int(size), download=not no_download).name
    manifest = prepare(dataset, out_dir or f"data/prepared/{name}", size=int(size),
                       download=not no_download)
    console.print(f"prepared {manifest['spec']['name']}: {manifest['spec']['splits']}")


def main() -> None:
    sys.exit(cli.main(prog_name="mednns", standalone_mode=True))


if __name__ == "__main__":
    main()
