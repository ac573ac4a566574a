"""`mednns data`: inspect, validate and prepare a dataset."""

from __future__ import annotations

import click

from mednns.cli.options import classes_option, json_option, offline_option, size_option, task_option
from mednns.cli.output import console, print_json, print_table


@click.group()
def data() -> None:
    """Inspect, validate and prepare datasets (MedMNIST names or your own npz)."""


@data.command("info")
@click.argument("dataset")
@size_option
@offline_option
@task_option
@classes_option
@json_option
def data_info(dataset: str, size: str, no_download: bool, task: str | None, num_classes: int | None,
              as_json: bool) -> None:
    """Print the spec and the split and class counts of DATASET (a name or an .npz path)."""
    from mednns.data import SPLITS, load_dataset

    ds = load_dataset(dataset, size=int(size), download=not no_download, task=task,
                      num_classes=num_classes)
    spec = ds.spec
    counts = {s: ds.class_counts(s) for s in SPLITS}
    if as_json:
        print_json({"spec": spec.to_dict(),
                     "class_counts": {s: {name: int(counts[s][i]) for i, name in enumerate(spec.label_names)}
                                      for s in SPLITS}})
        return
    click.echo(f"{spec.name}  task={spec.task.value}  channels={spec.channels}  classes={spec.num_classes}  "
               f"size={spec.image_size}px  source={spec.source}")
    rows = [[f"{i}: {label}", *(str(counts[s][i]) for s in SPLITS)] for i, label in enumerate(spec.label_names)]
    rows.append(["total", *(str(spec.splits[s]) for s in SPLITS)])
    print_table(f"{spec.name}: images per split and class",
                 [("class", "left"), *((s, "right") for s in SPLITS)], rows)


@data.command("check")
@click.argument("npz")
@task_option
@classes_option
def data_check(npz: str, task: str | None, num_classes: int | None) -> None:
    """Validate NPZ (a MedMNIST-layout file); exit 0 when it is usable, 1 otherwise."""
    from mednns.data import load_dataset

    ds = load_dataset(npz, download=False, task=task, num_classes=num_classes)
    console.print(f"ok: {npz} ({ds.spec.task.value}, {ds.spec.num_classes} classes, "
                  f"{ds.spec.channels} channel(s), {ds.spec.image_size}px, splits {ds.spec.splits})")


@data.command("prepare")
@click.argument("dataset")
@click.option("--out", "out_dir", type=click.Path(), help="Output folder, new or empty [data/prepared/<name>].")
@size_option
@offline_option
@task_option
@classes_option
def data_prepare(dataset: str, out_dir: str | None, size: str, no_download: bool, task: str | None,
                 num_classes: int | None) -> None:
    """Validate DATASET and write a prepared copy with its manifest (what the `prepare` stage runs)."""
    from mednns.data import prepare, resolve
    from mednns.data.prepared import check_out_dir

    if out_dir:
        check_out_dir(out_dir)  # before a download or a long validation
    name = resolve(dataset, size=int(size), download=not no_download).name
    manifest = prepare(dataset, out_dir or f"data/prepared/{name}", size=int(size),
                       download=not no_download, task=task, num_classes=num_classes)
    console.print(f"prepared {manifest['spec']['name']}: {manifest['spec']['splits']}")
