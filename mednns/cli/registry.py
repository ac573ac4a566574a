"""`mednns registry`: register what the zoo holds (only what is new)."""

from __future__ import annotations

import click

from mednns.cli.output import console


@click.group()
def registry() -> None:
    """The MLflow model registry (MLFLOW_TRACKING_URI, or the embedded mlflow.db)."""


@registry.command("sync")
@click.option("--zoo-dir", default="zoo", show_default=True, type=click.Path(), help="Folder of zoo tables.")
@click.option("--supernets", default="models/supernets", show_default=True, type=click.Path(),
              help="Folder of the supernet checkpoints.")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--workers", default=8, show_default=True, type=click.IntRange(min=1),
              help="Parallel requests to the server.")
@click.option("--metaspace", type=click.Path(), help="Also register this meta-space folder.")
def registry_sync(zoo_dir, supernets, datasets, workers, metaspace) -> None:
    """Register every subnet, supernet and champion of the zoo (only what is new)."""
    from registry.models import register_metaspace, sync

    rep = sync(zoo_dir, supernets, workers=workers, datasets=datasets or None)
    console.print(f"{rep.subnets} subnets of {len(rep.datasets)} dataset(s): {rep.created} new, "
                  f"{rep.duplicates_removed} duplicate(s) removed, {rep.seconds:.1f} s")
    for ds, champ in rep.champions.items():
        console.print(f"  {ds}: champion {champ}")
    if metaspace:
        console.print(f"meta-space: {register_metaspace(metaspace)}")
