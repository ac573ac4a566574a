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


@cli.command("select")
@click.argument("dataset")
@click.option("--k", default=5, show_default=True, help="Top candidates of the meta-space to try.")
@click.option("--max-params", type=int, help="Budget: parameters.")
@click.option("--max-macs", type=int, help="Budget: multiply-accumulates at batch 1.")
@click.option("--max-latency-ms", type=float, help="Budget: CPU latency at batch 1 (zoo measurement).")
@click.option("--finetune-epochs", default=3, show_default=True, help="Epochs for the chosen model (0: head fit only).")
@click.option("--probe-epochs", default=0, show_default=True, help="Training epochs for each candidate before the pick.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), help="Write the chosen model as ONNX here.")
@click.option("--card", "card_path", type=click.Path(dir_okay=False), help="Model card [<export>.md].")
@click.option("--metaspace", default="models/metaspace", show_default=True, type=click.Path(),
              help="Meta-space folder (a DVC output of train_metaspace).")
@click.option("--supernets", default="models/supernets", show_default=True, type=click.Path(),
              help="Folder of the zoo's supernet checkpoints.")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the exported model in MLflow (ONNX flavour).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@_size
@_task
@_classes
def select_cmd(dataset, k, max_params, max_macs, max_latency_ms, finetune_epochs, probe_epochs, export_path,
               card_path, metaspace, supernets, register, device, size, task, num_classes) -> None:
    """Pick, fine-tune and export the zoo model for DATASET (an .npz path or a MedMNIST name)."""
    from pathlib import Path

    from mednns.data import load_dataset
    from mednns.finetune import FinetuneConfig
    from mednns.metaspace import MetaSpace
    from mednns.select import select

    ds = load_dataset(dataset, size=int(size), task=task, num_classes=num_classes)
    budget = {"max_params": max_params, "max_macs": max_macs, "max_latency_ms": max_latency_ms}
    sel = select(ds, MetaSpace.load(metaspace), supernets, k=k, budget=budget,
                 finetune=FinetuneConfig(epochs=finetune_epochs), probe_epochs=probe_epochs, device=device)
    table = Table("rank", "source", "arch_id", "predicted", "probe val acc", "params", "MACs", "ms",
                  title=f"{ds.spec.name}: candidates (chosen in bold)")
    for i, row in enumerate(sel.candidates.itertuples()):
        table.add_row(str(i + 1), row.source_dataset, row.arch_id, f"{row.predicted_score:.3f}",
                      f"{row.probe_val_acc:.4f}", f"{int(row.params):,}", f"{int(row.macs):,}",
                      f"{row.latency_ms:.2f}", style="bold" if row.arch_id == sel.chosen.arch_id
                      and row.source_dataset == sel.chosen.source_dataset else None)
    console.print(table)
    console.print(f"chosen: {sel.chosen.arch_id} from {sel.chosen.source_dataset}; val acc {sel.val['acc']:.4f} "
                  f"auc {sel.val['auc']:.4f}; test acc {sel.test['acc']:.4f} auc {sel.test['auc']:.4f} "
                  f"({sel.seconds:.1f} s)")
    if export_path:
        _export_selection(sel, ds, Path(export_path), Path(card_path) if card_path else None, register)


def _export_selection(sel, ds, export_path, card_path, register: bool) -> None:
    from mednns.deliver import deliver

    name = None
    if register:
        from registry.selected import selected_model_name

        name = selected_model_name(ds.spec.name)
    out = deliver(sel, ds, export_path, card_path, registered_as=name)
    console.print(f"wrote {export_path} (opset {out.onnx.opset}; onnxruntime vs PyTorch on "
                  f"{out.onnx.images_checked} val images: max abs diff {out.onnx.max_abs_diff:.1e}); "
                  f"onnxruntime test acc {out.onnx_test['acc']:.4f}; card {out.card}")
    if register:
        from registry.selected import register_selection

        console.print(f"registered as {register_selection(sel, ds, out)}")


def main() -> None:
    sys.exit(cli.main(prog_name="mednns", standalone_mode=True))


if __name__ == "__main__":
    main()
