"""The `mednns` command line: a thin shell over the library (the one place that may reach `registry`)."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from mednns.utils.errors import DEBUG_ENV, MedNNSError, user_message
from mednns.utils.logs import LEVELS as LOG_LEVELS, setup_logging

console = Console()


def _print_json(obj) -> None:
    """One JSON document on stdout (NaN as null), for scripts: `--json` of the browsing commands."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item"):  # numpy scalars
            return clean(v.item())
        return v

    click.echo(json.dumps(clean(obj), indent=2, default=str))


def _print_table(title: str, columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    """A table that never cuts a value: rich's on a terminal (cells wrap, never "..."), plain aligned
    text when piped, whatever the width. `columns`: (header, "left" | "right")."""
    if console.is_terminal:
        table = Table(title=title)
        for name, justify in columns:
            table.add_column(name, justify=justify, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(name), *(len(r[i]) for r in rows)]) for i, (name, _) in enumerate(columns)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if j == "right" else c.ljust(w)
                         for c, w, (_, j) in zip(cells, widths, columns)).rstrip()

    click.echo(title)
    click.echo(line([name for name, _ in columns]))
    for row in rows:
        click.echo(line(row))


class _Group(click.Group):
    """The root group: every expected failure of any subcommand becomes one line and exit code 1
    (`mednns.utils.errors`); a bug keeps its traceback, and `--debug` keeps it for every error."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            message = user_message(e, debug=ctx.params.get("debug", False))
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mednns")
@click.option("--log-level", default="INFO", show_default=True, envvar="MEDNNS_LOG_LEVEL",
              type=click.Choice(LOG_LEVELS, case_sensitive=False), help="Logging level [MEDNNS_LOG_LEVEL].")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV,
              help=f"Show the traceback of every error, expected ones too [{DEBUG_ENV}=1].")
def cli(log_level: str, debug: bool) -> None:
    """MedNNS: pick the architecture and pretrained weights for a new medical-imaging dataset."""
    setup_logging(log_level.upper())


@cli.group()
def data() -> None:
    """Inspect, validate and prepare datasets (MedMNIST names or your own npz)."""


_size = click.option("--size", type=click.Choice(["28", "64", "128", "224"]), default="28",
                     show_default=True, help="MedMNIST image size (for MedMNIST names).")
_offline = click.option("--no-download", is_flag=True, help="Never download; fail if the file is missing.")
_task = click.option("--task", type=click.Choice(["multi-class", "binary-class", "multi-label",
                                                  "ordinal-regression"]),
                     help="Task of your own npz (inferred from its labels if omitted).")
_classes = click.option("--num-classes", type=click.IntRange(2, 10_000),
                        help="Classes of your own npz (inferred from its labels if omitted; needed when a class "
                             "occurs in no split).")


_json = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


@data.command("info")
@click.argument("dataset")
@_size
@_offline
@_task
@_classes
@_json
def data_info(dataset: str, size: str, no_download: bool, task: str | None, num_classes: int | None,
              as_json: bool) -> None:
    """Print the spec and the split and class counts of DATASET (a name or an .npz path)."""
    from mednns.data import SPLITS, load_dataset

    ds = load_dataset(dataset, size=int(size), download=not no_download, task=task,
                      num_classes=num_classes)
    spec = ds.spec
    counts = {s: ds.class_counts(s) for s in SPLITS}
    if as_json:
        _print_json({"spec": spec.to_dict(),
                     "class_counts": {s: {name: int(counts[s][i]) for i, name in enumerate(spec.label_names)}
                                      for s in SPLITS}})
        return
    click.echo(f"{spec.name}  task={spec.task.value}  channels={spec.channels}  classes={spec.num_classes}  "
               f"size={spec.image_size}px  source={spec.source}")
    rows = [[f"{i}: {label}", *(str(counts[s][i]) for s in SPLITS)] for i, label in enumerate(spec.label_names)]
    rows.append(["total", *(str(spec.splits[s]) for s in SPLITS)])
    _print_table(f"{spec.name}: images per split and class",
                 [("class", "left"), *((s, "right") for s in SPLITS)], rows)


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
@click.option("--out", "out_dir", type=click.Path(), help="Output folder, new or empty [data/prepared/<name>].")
@_size
@_offline
@_task
@_classes
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


def _device(ctx, param, value: str) -> str:
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: use cpu, cuda or cuda:<index>")
    return value


def _onnx_path(ctx, param, value: str | None) -> str | None:
    from pathlib import Path

    if value is None:
        return None
    path = Path(value)
    if path.suffix != ".onnx":
        raise click.BadParameter(f"{value!r}: an ONNX file name must end in .onnx (e.g. {path.stem or 'model'}.onnx)")
    _writable_file(path)
    return value


def _card_path(ctx, param, value: str | None) -> str | None:
    from pathlib import Path

    if value is not None:
        _writable_file(Path(value))
    return value


def _writable_file(path) -> None:
    if path.is_dir():
        raise click.BadParameter(f"{str(path)!r} is a folder; give a file name")
    for folder in path.parents:
        if folder.exists() and not folder.is_dir():
            raise click.BadParameter(f"{str(path)!r}: {folder} is a file, not a folder")


def _folder(what: str, path: str, option: str, fix: str) -> None:
    from pathlib import Path

    if not Path(path).is_dir():
        raise MedNNSError(f"{what} folder {path!r} not found (relative paths start at the current folder, "
                          f"{Path.cwd()}); give it with {option}, or {fix}")


def _figure(value, fmt: str) -> str:
    """A candidate's figure, or "-" where it has none (a pretrained network is not in the zoo's tables)."""
    import math

    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


# The names of mednns.selector.pretrained.PRETRAINED and SelectConfig's defaults, repeated: importing them
# here would import torch before usage errors are checked (tests/test_config.py holds them equal).
DEFAULT_PRETRAINED = ("efficientnet_lite0", "efficientnet_lite0_zoo")


@cli.command("select")
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
@click.option("--pretrained", multiple=True, type=click.Choice(DEFAULT_PRETRAINED),
              help="Pretrained whole network tried beside the zoo's subnets; repeatable [default: both: "
                   "efficientnet_lite0 with ImageNet weights, efficientnet_lite0_zoo the same trained further on "
                   "the zoo's datasets].")
@click.option("--zoo-only", is_flag=True, help="Try the zoo's subnets alone (no pretrained whole network).")
@click.option("--pretrained-size", default=128, show_default=True, type=click.IntRange(min=32),
              help="Input resolution of the pretrained networks (images are resized to it).")
@click.option("--export", "export_path", callback=_onnx_path, help="Write the chosen model as ONNX here (.onnx).")
@click.option("--card", "card_path", callback=_card_path, help="Model card [<export>.md].")
@click.option("--metaspace", default="models/metaspace", show_default=True, type=click.Path(),
              help="Meta-space folder (a DVC output of train_metaspace).")
@click.option("--supernets", default="models/supernets", show_default=True, type=click.Path(),
              help="Folder of the zoo's supernet checkpoints.")
@click.option("--networks", default="models/pretrained", show_default=True, type=click.Path(),
              help="Folder of the zoo's whole networks (efficientnet_lite0_zoo.pt, stage pretrain).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the exported model in MLflow (ONNX flavour).")
@click.option("--device", default="cpu", show_default=True, callback=_device, help="cpu, cuda or cuda:<index>.")
@_size
@_task
@_classes
def select_cmd(dataset, k, max_params, max_macs, max_latency_ms, finetune_epochs, probe_epochs, pretrained,
               zoo_only, pretrained_size, export_path, card_path, metaspace, supernets, networks, register, device, size,
               task, num_classes) -> None:
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
    _folder("meta-space", metaspace, "--metaspace", "fetch it with `dvc pull models/metaspace`")
    _folder("supernet", supernets, "--supernets", "fetch them with `dvc pull models/supernets`")
    if "efficientnet_lite0_zoo" in pretrained:
        _folder("network", networks, "--networks", "fetch it with `dvc pull models/pretrained` (or try "
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
                 device=device)
    table = Table("rank", "source", "arch_id", "predicted", "val loss", "val acc", "params", "MACs", "ms",
                  title=f"{ds.spec.name}: candidates (chosen in bold)")
    for i, row in enumerate(sel.candidates.itertuples()):
        table.add_row(str(i + 1), row.source_dataset, row.arch_id, _figure(row.predicted_score, "{:.3f}"),
                      f"{row.probe_val_loss:.4f}", f"{row.probe_val_acc:.4f}", f"{int(row.params):,}",
                      _figure(row.macs, "{:,.0f}"),
                      _figure(row.latency_ms, "{:.2f}"), style="bold" if row.arch_id == sel.chosen.arch_id
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


@cli.group()
def zoo() -> None:
    """Browse, load and pull the registered model zoo (MLflow registry; MLFLOW_TRACKING_URI or mlflow.db)."""


@zoo.command("list")
@click.option("--dataset", help="Only subnets of this source dataset.")
@click.option("--min-acc", type=float, help="Minimum val accuracy.")
@click.option("--max-params", type=int, help="Maximum parameters.")
@click.option("--max-macs", type=int, help="Maximum multiply-accumulates at batch 1.")
@click.option("--max-latency-ms", type=float, help="Maximum CPU latency at batch 1 (zoo measurement).")
@click.option("--sort", default="val_acc", show_default=True, help="Column to sort by.")
@click.option("--limit", type=click.IntRange(min=0), help="Rows to print, 0: all [30 in a table, all with --json].")
@_json
def zoo_list(dataset, min_acc, max_params, max_macs, max_latency_ms, sort, limit, as_json) -> None:
    """List registered subnets, best first."""
    from registry.lookup import list_models

    df = list_models(dataset=dataset, min_acc=min_acc, max_params=max_params, max_macs=max_macs,
                     max_latency_ms=max_latency_ms, sort=sort)
    limit = (0 if as_json else 30) if limit is None else limit
    shown = df if not limit else df.head(limit)
    if as_json:
        _print_json(shown.to_dict(orient="records"))
        return
    rows = [[r.name, str(r.version), f"{r.params:,}" if r.params is not None else "-",
             f"{r.macs:,}" if r.macs is not None else "-", f"{r.latency_ms:.2f}", f"{r.val_acc:.4f}",
             f"{r.test_acc:.4f}"] for r in shown.itertuples()]
    title = f"{len(df)} registered subnets" + (f" (first {len(shown)})" if len(shown) < len(df) else "")
    _print_table(title, [("name", "left"), *((c, "right") for c in ("v", "params", "MACs", "ms", "val_acc",
                                                                     "test_acc"))], rows)


@zoo.command("show")
@click.argument("name")
@_json
def zoo_show(name: str, as_json: bool) -> None:
    """Show one registry entry: NAME, NAME/<version>, NAME@<alias>, <dataset> (its champion) or an arch_id."""
    from registry.lookup import show

    info = show(name)
    if as_json:
        _print_json(info)
        return
    click.echo(f"{info['name']} version {info['version']} of {info['versions']}  aliases {info['aliases'] or '-'}")
    if info["description"]:
        click.echo(info["description"])
    rows = [[k, v] for k, v in sorted(info["tags"].items())] + [["source", info["source"]],
                                                                ["run_id", info["run_id"] or "-"]]
    _print_table("tags", [("tag", "left"), ("value", "left")], rows)


@zoo.command("pull")
@click.option("--rev", help="Git revision (commit, tag, branch) whose zoo to fetch [the checked-out one].")
@click.option("--remote", "-r", help="DVC remote [the default remote].")
@click.option("--data/--no-data", default=True, show_default=True,
              help="Also the prepared datasets (the val images `mednns export` verifies against).")
@_json
def zoo_pull(rev, remote, data, as_json) -> None:
    """Fetch what select, load_model and export need of a revision from the DVC remote: supernets, zoo
    tables and their BatchNorm statistics, the meta-space, the zoo's whole networks (and the prepared datasets)."""
    from registry.remote import pull_zoo

    out = pull_zoo(rev=rev, remote=remote, data=data)
    if as_json:
        _print_json(out)
        return
    where = ("the workspace and the DVC cache" if out["workspace"]
             else "the DVC cache (registry entries of that revision now load here)")
    click.echo(f"{out['rev'] or 'the workspace'}: {len(out['outputs'])} output(s), {out['files']} file(s), "
               f"{out['bytes'] / 2 ** 20:.1f} MB, now in {where}; downloaded {out['fetched']} file(s), "
               f"{out['fetched_bytes'] / 2 ** 20:.1f} MB (the rest were in the cache already)"
               + (f"; {out['changed']} workspace file(s) updated" if out["workspace"] else ""))
    for path in out["outputs"]:
        click.echo(f"  {path}")
    if out["missing"]:
        click.echo(f"not in that revision: {', '.join(out['missing'])}")


@cli.group()
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


@cli.group()
def remote() -> None:
    """The DVC remote that carries the versioned zoo (S3 or S3-compatible)."""


@remote.command("add")
@click.argument("url")
@click.option("--endpoint-url", help="S3-compatible endpoint (MinIO, moto, ...).")
@click.option("--name", default="storage", show_default=True, help="DVC remote name.")
@click.option("--default/--no-default", default=True, show_default=True, help="Make it the default remote.")
@click.option("--access-key-id", help="Keep credentials in .dvc/config.local (never committed); the secret key "
              "comes from AWS_SECRET_ACCESS_KEY or, in a terminal, a prompt. Without it: the environment.")
@click.option("--no-check", is_flag=True, help="Do not check the bucket first.")
def remote_add(url, endpoint_url, name, default, access_key_id, no_check) -> None:
    """Configure URL (s3://bucket/prefix) as the DVC remote, after checking the bucket answers.

    The secret key is never an option: an option would put it in the shell history and the process list."""
    import os

    from registry.remote import add_remote

    secret = None
    if access_key_id:
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not secret:
            if not sys.stdin.isatty():
                raise MedNNSError("--access-key-id needs its secret key: set AWS_SECRET_ACCESS_KEY, or run the "
                                  "command in a terminal to be asked for it")
            secret = click.prompt("Secret access key", hide_input=True)
    out = add_remote(url, endpoint_url, name=name, default=default, access_key_id=access_key_id,
                     secret_access_key=secret, check=not no_check)
    console.print(f"remote {out['name']!r} -> {url}" + (f" at {endpoint_url}" if endpoint_url else "")
                  + f" (credentials: {out['credentials']}); `dvc push` / `mednns zoo pull` move the zoo")


@cli.command("export")
@click.argument("model")
@click.argument("output", callback=_onnx_path)
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


def main() -> None:
    sys.exit(cli.main(prog_name="mednns", standalone_mode=True))


if __name__ == "__main__":
    main()
