"""Handing the chosen model over: the verified ONNX file, its registry entry and its model card,
together or not at all."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from mednns.selector.card import model_card
from mednns.data.npz import MedDataset
from mednns.selector.export import ExportReport, export_onnx, onnx_predict
from mednns.train.metrics import evaluate_scores
from mednns.selector.selection import Selection
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_paths


@dataclass
class Delivery:
    onnx: ExportReport
    card: Path
    onnx_test: dict[str, float]   # scores of the ONNX file itself, through onnxruntime, on the test split
    tags: dict
    registered: str | None = None  # the registry entry (models:/<name>/<version>), when registered


def selection_tags(sel: Selection) -> dict:
    """What a selected model is (its config) and how it was made (the fine-tuning recipe)."""
    return {**sel.net.cfg.tags(), "dataset": sel.dataset, "source_supernet": sel.net.cfg.source,
            "finetune_epochs": sel.finetune.epochs, "finetune_lr": sel.finetune.lr}


def card_path_for(onnx_path: str | Path, card_path: str | Path | None = None) -> Path:
    onnx_path = Path(onnx_path)
    card = Path(card_path) if card_path else onnx_path.with_suffix(".md")
    if card.resolve() == onnx_path.resolve():
        raise MedNNSError(f"{card}: the model card cannot be the ONNX file itself; give another --card")
    return card


def deliver(sel: Selection, ds: MedDataset, onnx_path: str | Path, card_path: str | Path | None = None,
            register: Callable[[Delivery], str] | None = None) -> Delivery:
    """Export `sel.net` to `onnx_path` (verified), score the file on test, register it when `register`
    is given, and write the card beside it (`<onnx>.md` unless `card_path`).

    Everything is written under temporary names and renamed into place only after the registration
    succeeded, so a failure anywhere leaves no file behind. `register` gets the Delivery of the
    temporary files (its card says nothing of a registry yet) and returns the registry entry, which the
    final card then states.
    """
    onnx_path = Path(onnx_path)
    card_path = card_path_for(onnx_path, card_path)
    tags = selection_tags(sel)
    with atomic_paths(onnx_path, card_path) as (tmp_onnx, tmp_card):
        report = export_onnx(sel.net, ds.spec, tmp_onnx, ds.images("val"),
                             extra_metadata={"dataset": sel.dataset, "finetune_epochs": sel.finetune.epochs})
        onnx_test = evaluate_scores(ds.labels("test"), onnx_predict(tmp_onnx, ds.images("test")), ds.spec.task)
        registered = None
        if register is not None:
            tmp_card.write_text(model_card(sel, ds.spec, onnx_path, onnx_test["acc"]))
            registered = register(Delivery(report, tmp_card, onnx_test, tags))
        tmp_card.write_text(model_card(sel, ds.spec, onnx_path, onnx_test["acc"], registered))
    return Delivery(replace(report, path=onnx_path), card_path, onnx_test, tags, registered)
