"""Model cards in the registry: markdown descriptions (the MLflow UI renders them) of every entry.

Each card is made from what the entry is registered with (its tags, its config, its checkpoint's
metadata) and nothing else, so it says what the tags say and a re-sync rewrites only a card whose
entry changed. A version's card names its own `models:/<name>/<version>` URI: the two lines that
load it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

MAX_CHARS = 5000   # the model registry's description column (MLflow's SQL schema)


def _num(v, digits: int = 4) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _int(v) -> str:
    try:
        return f"{int(float(v)):,}"
    except (TypeError, ValueError):
        return "-"


def _classes(names) -> str:
    return "; ".join(f"{i}: {n}" for i, n in enumerate(names))


def _short(md5: str | None) -> str:
    return (md5 or "")[:8] or "-"


def _commit(c: str | None) -> str:
    c = c or "unknown"
    return c if c == "unknown" else c[:12] + ("+dirty" if c.endswith("+dirty") else "")


def fit(text: str, more: str = "", tail: str = "") -> str:
    """`text` + `tail`, `text` cut at a line boundary to keep within the registry's limit (saying so)."""
    if len(text) + len(tail) <= MAX_CHARS:
        return text + tail
    note = f"\n\n_(card shortened to fit the registry; {more or 'see the run artifacts'})_\n"
    cut = text[: MAX_CHARS - len(note) - len(tail)]
    return cut[: cut.rfind("\n")] + note + tail


def _io(cfg) -> list[str]:
    from registry.loader import raw_shape

    shape = "(N, " + ", ".join(str(d) for d in raw_shape(cfg)[1:]) + ")"
    return [f"| input | uint8 images {shape} as the npz stores them (the model converts and normalises them) |",
            f"| output | float32 logits (N, {cfg.num_classes}): {_classes(cfg.class_names)} |"]


def load_lines(uri_name: str, torch_too: bool = True) -> list[str]:
    """The code that loads `uri_name` (`name/version` or `name@alias`)."""
    lines = ["**Load it** (anywhere `MLFLOW_TRACKING_URI` reaches this server):", "", "```python",
             "import mlflow",
             f'model = mlflow.pyfunc.load_model("models:/{uri_name}")  # model.predict(images) -> logits',
             "```"]
    if torch_too:
        lines += ["", f'As a torch module: `from registry import load_model; net = load_model("{uri_name}")`.']
    return lines


def _scoring(tags: dict, dataset: str) -> list[str]:
    rec = {k[len("recalib_"):]: v for k, v in tags.items() if k.startswith("recalib_")}
    how = (f"BatchNorm statistics re-estimated on {_int(rec.get('images'))} train images of {dataset} "
           f"(seeded draw, seed {rec.get('seed', '-')}, batch {rec.get('batch', '-')}, cumulative average) and "
           f"stored with the zoo (`{tags.get('bn_stats', '-')}`, md5 `{_short(tags.get('bn_stats_md5'))}`); "
           f"then scored on {_int(tags.get('eval_images'))} images per own split (val, test; the zoo's seeded "
           "subset where a split is larger). Loaded by name it gets the very same statistics, so it scores "
           "what these tags say.")
    return ["**How it was scored.** " + how, "",
            "| split | accuracy | AUC |", "|---|---:|---:|",
            f"| val | {_num(tags.get('val_acc'))} | {_num(tags.get('val_auc'))} |",
            f"| test | {_num(tags.get('test_acc'))} | {_num(tags.get('test_auc'))} |"]


def subnet_card(name: str, version: int | str, tags: dict, run_id: str | None = None) -> str:
    """The card of one subnet version."""
    return fit("\n".join([f"### `{name}` version {version}", "", *_subnet_body(tags, run_id), "",
                          *load_lines(f"{name}/{version}")]) + "\n")


def _subnet_body(tags: dict, run_id: str | None) -> list[str]:
    from mednns import ModelConfig

    cfg = ModelConfig.from_json(tags["config"])
    dataset = tags.get("dataset", cfg.source)
    return [f"Subnet `{tags.get('arch_id')}` of the **{dataset}** supernet (`mednns.{dataset}.supernet`), "
             "with the supernet's weights and its own recalibrated BatchNorm statistics: the network the zoo "
             "scored.", "",
             "| | |", "|---|---|",
             f"| source supernet | `{tags.get('checkpoint', '-')}`, md5 `{_short(tags.get('checkpoint_md5'))}`, "
             f"git `{_commit(tags.get('git_commit'))}`" + (f", trained in run `{run_id}`" if run_id else "") + " |",
             f"| architecture | `{tags.get('arch_json', cfg.arch)}` |",
             f"| parameters | {_int(tags.get('params'))} |",
             f"| MACs at batch 1 | {_int(tags.get('macs'))} |",
             f"| CPU latency at batch 1 | {_num(tags.get('latency_ms'), 2)} ms (zoo measurement) |",
             *_io(cfg), "", *_scoring(tags, dataset)]


def subnet_model_card(name: str, tags: dict) -> str:
    """The registered model of one subnet: what it is; each version (one per checkpoint) has its scores."""
    return fit("\n".join([
        f"Subnet `{tags['arch_id']}` of the **{tags['dataset']}** supernet: {_int(tags.get('params'))} parameters, "
        f"{_int(tags.get('macs'))} MACs at batch 1. One version per supernet checkpoint it was sliced from; "
        "each version's description is its card (source, scoring, scores).", "",
        f"Latest version: `mlflow.pyfunc.load_model(\"models:/{name}/latest\")`, or "
        f"`registry.load_model(\"{name}\")` as a torch module."]) + "\n")


def champion_lines(dataset: str, best: dict, own, previous: dict | None) -> list[str]:
    """What a champion beat: the other subnets of its zoo (`own`: that zoo's rows) and the champion before."""
    others = own[own.arch_id != best["arch_id"]].sort_values(["val_acc", "arch_id"], ascending=[False, True])
    lines = [f"## Champion of the {dataset} zoo", "",
             f"Subnet `{best['arch_id']}` has the best val accuracy ({_num(best['val_acc'])}) of the "
             f"{len(own)} subnets of this zoo (ties go to the smaller arch_id). It beats:", ""]
    if len(others):
        second = others.iloc[0]
        largest = others.sort_values(["params", "arch_id"], ascending=[False, True]).iloc[0]
        lines += [f"- the runner-up `{second.arch_id}`: val accuracy {_num(second.val_acc)} "
                  f"(test {_num(second.test_acc)}), {_int(second.params)} parameters",
                  f"- the median of the other {len(others)}: val accuracy {_num(others.val_acc.median())}",
                  f"- the largest other subnet `{largest.arch_id}` ({_int(largest.params)} parameters; the champion "
                  f"has {_int(best.get('params'))}): val accuracy {_num(largest.val_acc)}"]
    else:
        lines.append("- nothing: it is the only subnet of its zoo")
    if previous:
        lines.append(f"- the previous champion, version {previous['version']} (`{previous['arch_id']}` of checkpoint "
                     f"`{_short(previous.get('checkpoint_md5'))}`): val accuracy {_num(previous.get('val_acc'))}"
                     + ("" if _better(best["val_acc"], previous.get("val_acc")) else
                        " (on its own zoo's val images; the alias follows the newest zoo)"))
    return lines + [""]


def _better(a, b) -> bool:
    try:
        return float(a) >= float(b)
    except (TypeError, ValueError):
        return True


def champion_card(name: str, version: int | str, tags: dict, beats: list[str], run_id: str | None = None) -> str:
    lines = [f"### `{name}` version {version}: subnet `{tags['subnet']}`", "", *beats, *_subnet_body(tags, run_id),
             "", *load_lines(f"{name}/{version}"), "",
             f'The current champion, whichever version it is: `mlflow.pyfunc.load_model("models:/{name}@champion")`.']
    return fit("\n".join(lines) + "\n")


def supernet_card(name: str, version: int | str, tags: dict, meta: dict, run_id: str | None = None) -> str:
    cfg, spec = meta["config"], meta["spec"]
    final = (meta.get("summary") or {}).get("final") or {}
    metrics = ", ".join(f"{k} {_num(v)}" for k, v in sorted(final.items()) if isinstance(v, (int, float)))
    lines = [f"### `{name}` version {version}", "",
             f"Weight-sharing supernet trained on **{spec['name']}** ({spec['task']}, {spec['num_classes']} classes, "
             f"{cfg['in_channels']} channel(s), {cfg['image_size']} px; splits {spec.get('splits')}). Every "
             f"`mednns.{spec['name']}.<arch_id>` subnet is sliced from it.", "",
             "| | |", "|---|---|",
             f"| checkpoint | `{tags.get('checkpoint')}`, md5 `{_short(tags.get('checkpoint_md5'))}`, "
             f"git `{_commit(tags.get('git_commit'))}`" + (f", trained in run `{run_id}`" if run_id else "") + " |",
             f"| search space | `{json.dumps(cfg['space'], sort_keys=True)}` |",
             f"| final scores | {metrics or '-'} |", "",
             "As a pyfunc it predicts with its largest arch; `supernet.extract(arch)` slices a subnet (with the "
             "supernet's own BatchNorm statistics: load a registered subnet to get the scored network).", "",
             *load_lines(f"{name}/{version}")]
    return fit("\n".join(lines) + "\n")


def metaspace_card(name: str, version: int | str, tags: dict, config: dict, candidates) -> str:
    sources = ", ".join(config.get("sources", []))
    lines = [f"### `{name}` version {version}", "",
             f"The MedNNS meta-space: it embeds a dataset (uint8 images) and ranks the {len(candidates)} zoo "
             f"models it knows (sources: {sources}) by their predicted transfer score.", "",
             "| | |", "|---|---|",
             f"| folder | `{tags.get('path')}`, content hash `{_short(tags.get('path_md5'))}`, "
             f"git `{_commit(tags.get('git_commit'))}` |",
             f"| feature extractor | `{config.get('features', {}).get('extractor', '-')}` |",
             f"| query images | {config.get('query_images', '-')} per query |",
             "| input | uint8 images (N, H, W, C) of one dataset, C = 1 or 3 (a greyscale (N, H, W) array as "
             "`images[..., None]`), N >= 2 |",
             "| output | the k best candidates: rank, source_dataset, arch_id, arch_json, predicted_score, "
             "similarity, params, macs, latency_ms, source_val_acc |",
             "| params | k (default 5), max_params, max_macs, max_latency_ms |", "",
             "**Load it** (anywhere `MLFLOW_TRACKING_URI` reaches this server):", "", "```python",
             "import mlflow",
             f'ranked = mlflow.pyfunc.load_model("models:/{name}/{version}").predict(images, params={{"k": 5}})',
             "```", "",
             f'As the library object: `from registry import load_model; ms = load_model("{name}/{version}")`, '
             "then `ms.query(images, k=5)`."]
    return fit("\n".join(lines) + "\n")


def network_card(name: str, version: int | str, tags: dict, cfg, summary: dict, run_id: str | None = None) -> str:
    """A whole network of the zoo (the continually pre-trained EfficientNet-Lite0, stage `pretrain`)."""
    val = ", ".join(f"{d} {_num(s['acc'])}" for d, s in (summary.get("val") or {}).items())
    lines = [f"### `{name}` version {version}", "",
             f"`{cfg.architecture}` with ImageNet weights trained further on the zoo's datasets "
             f"(**{', '.join(summary.get('sources', []))}**), one head each, {summary.get('steps')} steps at "
             f"{cfg.image_size} px. `mednns select` tries it beside the zoo's subnets (`--pretrained {Path(tags.get('network', name)).stem}`) "
             "with a head fit on your data; this entry holds its first source's head.", "",
             "| | |", "|---|---|",
             f"| network | `{tags.get('network')}`, md5 `{_short(tags.get('network_md5'))}`, "
             f"git `{_commit(tags.get('git_commit'))}`" + (f", trained in run `{run_id}`" if run_id else "") + " |",
             f"| val accuracy through each source's head | {val or '-'} |",
             f"| input | uint8 images as the npz stores them, converted to {cfg.in_channels} channel(s) at "
             f"{cfg.image_size} px |", "",
             *load_lines(f"{name}/{version}")]
    return fit("\n".join(lines) + "\n")


def selected_card(card_text: str, name: str, version: int | str) -> str:
    """The selector's own model card, whole, and the lines that load this version."""
    load = ["", "## Load it", "", "```python", "import mlflow",
            f'model = mlflow.pyfunc.load_model("models:/{name}/{version}")  # onnxruntime',
            "logits = model.predict(images)  # uint8 images exactly as the npz stores them", "```", ""]
    return fit(card_text.rstrip() + "\n", "the whole card is among the selection run's artifacts",
               "\n".join(load))
