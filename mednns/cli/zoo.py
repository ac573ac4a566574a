"""`mednns zoo`: browse the registered zoo and pull a versioned one from the DVC remote."""

from __future__ import annotations

import click

from mednns.cli.options import json_option
from mednns.cli.output import print_json, print_table


@click.group()
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
@json_option
def zoo_list(dataset, min_acc, max_params, max_macs, max_latency_ms, sort, limit, as_json) -> None:
    """List registered subnets, best first."""
    from registry.lookup import list_models

    df = list_models(dataset=dataset, min_acc=min_acc, max_params=max_params, max_macs=max_macs,
                     max_latency_ms=max_latency_ms, sort=sort)
    limit = (0 if as_json else 30) if limit is None else limit
    shown = df if not limit else df.head(limit)
    if as_json:
        print_json(shown.to_dict(orient="records"))
        return
    rows = [[r.name, str(r.version), f"{r.params:,}" if r.params is not None else "-",
             f"{r.macs:,}" if r.macs is not None else "-", f"{r.latency_ms:.2f}", f"{r.val_acc:.4f}",
             f"{r.test_acc:.4f}"] for r in shown.itertuples()]
    title = f"{len(df)} registered subnets" + (f" (first {len(shown)})" if len(shown) < len(df) else "")
    print_table(title, [("name", "left"), *((c, "right") for c in ("v", "params", "MACs", "ms", "val_acc",
                                                                     "test_acc"))], rows)


@zoo.command("show")
@click.argument("name")
@json_option
def zoo_show(name: str, as_json: bool) -> None:
    """Show one registry entry: NAME, NAME/<version>, NAME@<alias>, <dataset> (its champion) or an arch_id."""
    from registry.lookup import show

    info = show(name)
    if as_json:
        print_json(info)
        return
    click.echo(f"{info['name']} version {info['version']} of {info['versions']}  aliases {info['aliases'] or '-'}")
    if info["description"]:
        click.echo(info["description"])
    rows = [[k, v] for k, v in sorted(info["tags"].items())] + [["source", info["source"]],
                                                                ["run_id", info["run_id"] or "-"]]
    print_table("tags", [("tag", "left"), ("value", "left")], rows)


@zoo.command("pull")
@click.option("--rev", help="Git revision (commit, tag, branch) whose zoo to fetch [the checked-out one].")
@click.option("--remote", "-r", help="DVC remote [the default remote].")
@click.option("--data/--no-data", default=True, show_default=True,
              help="Also the prepared datasets (the val images `mednns export` verifies against).")
@json_option
def zoo_pull(rev, remote, data, as_json) -> None:
    """Fetch what select, load_model and export need of a revision from the DVC remote: supernets, zoo
    tables and their BatchNorm statistics, the meta-space, the zoo's whole networks (and the prepared datasets)."""
    from registry.remote import pull_zoo

    out = pull_zoo(rev=rev, remote=remote, data=data)
    if as_json:
        print_json(out)
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
