"""`mednns export`: a registered subnet to ONNX, checked against PyTorch."""

from __future__ import annotations

import click

from mednns.cli.options import onnx_file
from mednns.cli.output import console
from mednns.utils.errors import MedNNSError


@click.command("export")
@click.argument("model")
@click.argument("output", callback=onnx_file)
@click.option("--data", "data_name", help="Dataset (npz or name) whose val images verify the export "
              "[the subnet's own: data/prepared/<dataset>].")
def export_cmd(model: str, output: str, data_name: str | None) -> None:
    """Export the registered subnet MODEL (name, name@alias, models:/ URI) to OUTPUT (.onnx)."""
    from pathlib import Path

    from mednns.data import load_dataset, load_prepared
    from mednns.selector import export_onnx
    from registry.lookup import build_from_tags, resolve_version
    from registry.tracking import tracking_uri

    version = resolve_version(model)
    tags = version.tags
    if tags.get("kind") not in ("subnet", "champion"):
        raise MedNNSError(f"{model}: a {tags.get('kind')} entry; only subnets export to ONNX "
                          "(see `mednns zoo list`)")
    prepared = Path(f"data/prepared/{tags['dataset']}")
    if data_name:
        ds = load_dataset(data_name, download=False)
    elif prepared.is_dir():
        ds = load_prepared(prepared)
    else:
        raise MedNNSError(f"{prepared} not found: run `dvc pull {prepared}`, or give --data with val images "
                          "of the subnet's dataset to verify the export")
    # the network the zoo scored (its recalibrated BatchNorm statistics), from the checkout or the registry
    net = build_from_tags(tags, source=version.source, uri=tracking_uri())
    report = export_onnx(net, ds.spec, output, ds.images("val"), extra_metadata={"registered_model": model})
    console.print(f"wrote {output}: {tags['dataset']} subnet {tags['arch_id']}, opset {report.opset}, "
                  f"max |onnx - torch| {report.max_abs_diff:.1e} on {report.images_checked} val images")
