"""Handing the chosen model over: the verified ONNX file and its model card, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mednns.selector.card import model_card, write_card
from mednns.data.npz import MedDataset
from mednns.selector.export import ExportReport, export_onnx, onnx_predict
from mednns.train.metrics import evaluate_scores
from mednns.selector.selection import Selection


@dataclass
class Delivery:
    onnx: ExportReport
    card: Path
    onnx_test: dict[str, float]   # scores of the ONNX file itself, through onnxruntime, on the test split
    tags: dict


def selection_tags(sel: Selection) -> dict:
    """What a selected model is (its config) and how it was made (the fine-tuning recipe)."""
    return {**sel.net.cfg.tags(), "dataset": sel.dataset, "source_supernet": sel.net.cfg.source,
            "finetune_epochs": sel.finetune.epochs, "finetune_lr": sel.finetune.lr}


def deliver(sel: Selection, ds: MedDataset, onnx_path: str | Path, card_path: str | Path | None = None,
            registered_as: str | None = None) -> Delivery:
    """Export `sel.net` to `onnx_path` (verified), score the file on test, write the card beside it."""
    onnx_path = Path(onnx_path)
    tags = selection_tags(sel)
    report = export_onnx(sel.net, ds.spec, onnx_path, ds.images("val"),
                         extra_metadata={"dataset": sel.dataset, "finetune_epochs": sel.finetune.epochs})
    onnx_test = evaluate_scores(ds.labels("test"), onnx_predict(onnx_path, ds.images("test")), ds.spec.task)
    card = write_card(card_path or onnx_path.with_suffix(".md"),
                      model_card(sel, ds.spec, onnx_path, onnx_test["acc"], registered_as))
    return Delivery(report, card, onnx_test, tags)
