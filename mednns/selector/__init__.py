"""The selector: for a new dataset, pick a zoo model with the meta-space, fine-tune it, export it to ONNX
(checked in onnxruntime) with a model card, and compare it against training from scratch."""

from mednns.selector.deliver import Delivery, deliver
from mednns.selector.export import export_onnx, npz_layout, onnx_predict
from mednns.selector.finetune import FinetuneConfig, fit_head
from mednns.selector.selection import SelectConfig, Selection, select

__all__ = ["Delivery", "FinetuneConfig", "SelectConfig", "Selection", "deliver", "export_onnx", "fit_head",
           "npz_layout", "onnx_predict", "select"]
