"""`mednns select`: the pick for a new dataset, fine-tuned, exported to ONNX and registered."""

from __future__ import annotations

import click
from rich.table import Table

from mednns.cli.options import (card_file, classes_option, device_name, existing_folder, onnx_file, size_option,
                                task_option)
from mednns.cli.output import console, figure


# The names of mednns.selector.pretrained.PRETRAINED and SelectConfig's defaults, repeated: importing them
# here would import torch before usage errors are checked (tests/test_config.py holds them equal).
PRETRAINED = ("efficientnet_lite0", "efficientnet_lite0_zoo", "resnet18_zoo")
DEFAULT_PRETRAINED = ("efficientnet_lite0", "efficientnet_lite0_zoo")
ZOO_NETWORKS = ("efficientnet_lite0_zoo", "resnet18_zoo")


@click.command("select")
@click.argument("dataset")
@click.option("--k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Top candidates of the meta-space to try.")
@click.option("--max-params", type=click.IntRange(min=1), help="Budget: parameters.")
@click.option("--max-macs", type=click.IntRange(min=1), help="Budget: multiply-accumulates at batch 1.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True),
              help="Budget: CPU latency at batch 1 (zoo measurement).")
@click.option("--finetune-epochs", type=click.IntRange(min=0),
              help="Epochs for the chosen model (0: head fit only) [params.yaml finetune.epochs].")
@click.option("--probe-epochs", default=0, show_default=True, type=click.IntRange(min=0),
              help="Training epochs for each candidate before the pick.")
@click.option("--pretrained", multiple=True, type=click.Choice(PRETRAINED),
              help="Pretrained whole network tried beside the zoo's subnets; repeatable [default: "
                   "efficientnet_lite0 with ImageNet weights and efficientnet_lite0_zoo, the same trained further "
                   "on the zoo's datasets; opt-in: resnet18_zoo, ResNet-18 (28 px) trained on them, whose network "
                   "file `python -m pipelines.pretrain --network resnet18_zoo` writes].")
@click.option("--zoo-only", is_flag=True, help="Try the zoo's subnets alone (no pretrained whole network).")
@click.option("--pretrained-size", default=128, show_default=True, type=click.IntRange(min=32),
              help="Input resolution of the ImageNet network (images are resized to it); the zoo's networks take "
                   "the resolution they were trained at.")
@click.option("--subnet-margin", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="A zoo subnet is picked over the best whole network only if it leads it on val accuracy by more "
                   "than this many standard errors (0: the best val accuracy).")
@click.option("--export", "export_path", callback=onnx_file, help="Write the chosen model as ONNX here (.onnx).")
@click.option("--card", "card_path", callback=card_file, help="Model card [<export>.md].")
@click.option("--metaspace", default="models/metaspace", show_default=True, type=click.Path(),
              help="Meta-space folder (a DVC output of train_metaspace).")
@click.option("--supernets", default="models/supernets", show_default=True, type=click.Path(),
              help="Folder of the zoo's supernet checkpoints.")
@click.option("--networks", default="models/pretrained", show_default=True, type=click.Path(),
              help="Folder of the zoo's whole networks (<name>.pt, stage pretrain).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the exported model in MLflow (ONNX flavour).")
@click.option("--device", default="cpu", show_default=True, callback=device_name, help="cpu, cuda or cuda:<index>.")
@size_option
@task_option
@classes_option
def select_cmd(dataset, k, max_params, max_macs, max_latency_ms, finetune_epochs, probe_epochs, pretrained,
               zoo_only, pretrained_size, subnet_margin, export_path, card_path, metaspace, supernets, networks, register, device,
               size, task, num_classes) -> None:
    """Pick, fine-tune and export the zoo model for DATASET (an .npz path or a MedMNIST name)."""
    from pathlib import Path

    from dataclasses import replace

    # Everything that can be checked before the work (and before torch is imported) is checked first.
    if export_path and Path(card_path or Path(export_path).with_suffix(".md")).resolve() == Path(export_path).resolve():
        raise click.BadParameter("the model card cannot be the ONNX file itself", param_hint="--card")
    if zoo_only and pretrained:
        raise click.BadParameter("--zoo-only leaves out every pretrained whole network; drop one of the two",
                                 param_hint="--pretrained")
    pretrained = () if zoo_only else (pretrained or DEFAULT_PRETRAINED)
    existing_folder("meta-space", metaspace, "--metaspace", "fetch it with `dvc pull models/metaspace`")
    existing_folder("supernet", supernets, "--supernets", "fetch them with `dvc pull models/supernets`")
    if set(pretrained) & set(ZOO_NETWORKS):
        existing_folder("network", networks, "--networks", "fetch it with `dvc pull models/pretrained` (or try "
                "`--pretrained efficientnet_lite0` alone)")
    if export_path:
        if register:
            from registry.tracking import check_reachable, tracking_uri

            check_reachable(tracking_uri())

    from mednns.data import load_dataset
    from mednns.metaspace import MetaSpace
    from mednns.selector import FinetuneConfig, select
    from mednns.zoo import SubnetStore

    ds = load_dataset(dataset, size=int(size), task=task, num_classes=num_classes)
    ms = MetaSpace.load(metaspace)
    budget = {"max_params": max_params, "max_macs": max_macs, "max_latency_ms": max_latency_ms}
    finetune = FinetuneConfig() if finetune_epochs is None else replace(FinetuneConfig(), epochs=finetune_epochs)
    sel = select(ds, ms, SubnetStore(supernets, device, networks=networks), k=k, budget=budget,
                 finetune=finetune, probe_epochs=probe_epochs, pretrained=pretrained, pretrained_size=pretrained_size,
                 device=device, subnet_margin=subnet_margin)
    table = Table("rank", "source", "arch_id", "predicted", "val loss", "val acc", "params", "MACs", "ms",
                  title=f"{ds.spec.name}: candidates (chosen in bold)")
    for i, row in enumerate(sel.candidates.itertuples()):
        table.add_row(str(i + 1), row.source_dataset, row.arch_id, figure(row.predicted_score, "{:.3f}"),
                      f"{row.probe_val_loss:.4f}", f"{row.probe_val_acc:.4f}", f"{int(row.params):,}",
                      figure(row.macs, "{:,.0f}"),
                      figure(row.latency_ms, "{:.2f}"), style="bold" if row.arch_id == sel.chosen.arch_id
                      and row.source_dataset == sel.chosen.source_dataset else None)
    console.print(table)
    console.print(f"chosen: {sel.chosen.arch_id} from {sel.chosen.source_dataset}; val acc {sel.val['acc']:.4f} "
                  f"auc {sel.val['auc']:.4f}; test acc {sel.test['acc']:.4f} auc {sel.test['auc']:.4f} "
                  f"({sel.seconds:.1f} s)")
    if export_path:
        _export_selection(sel, ds, Path(export_path), Path(card_path) if card_path else None, register)


def _export_selection(sel, ds, export_path, card_path, register: bool) -> None:
    """The ONNX file, its registry entry and its card: all of them, or (on any failure) none."""
    from mednns.selector import deliver

    registrar = None
    if register:
        from registry.selected import register_selection

        registrar = lambda delivery: register_selection(sel, ds, delivery)  # noqa: E731
    out = deliver(sel, ds, export_path, card_path, register=registrar)
    console.print(f"wrote {export_path} (opset {out.onnx.opset}; onnxruntime vs PyTorch on "
                  f"{out.onnx.images_checked} val images: max abs diff {out.onnx.max_abs_diff:.1e}); "
                  f"onnxruntime test acc {out.onnx_test['acc']:.4f}; card {out.card}")
    if out.registered:
        console.print(f"registered as {out.registered}")
