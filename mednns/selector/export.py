"""ONNX export of a chosen network that takes the npz's raw uint8 images, checked before it is written.

The exported graph holds the preprocessing (`to_tensor`: layout, channel conversion, resolution,
normalisation), so any ONNX runtime can feed it images exactly as they are stored in a MedMNIST-layout
npz, `(N, H, W)` or `(N, H, W, 3)` uint8, without our code. The same preprocessing is written into the
model's `metadata_props` for runtimes that want to feed float tensors to a graph of their own.

A file is only written when the ONNX checker passes and onnxruntime agrees with PyTorch on real images
(every logit within 1e-4 absolute + 1e-4 relative, as `np.allclose`, and identical argmax); otherwise
the export raises and leaves nothing.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mednns.data.spec import DatasetSpec
from mednns.data.tensors import to_tensor
from mednns.nn.config import ModelConfig
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path

log = logging.getLogger(__name__)

# The TorchScript exporter: the same graph ops as the dynamo one in a fraction of its time, which counts
# against the selector's time-to-ONNX budget (benchmarks/select_speed.py).
OPSET = 17
# Logits may differ by float32 noise that grows with depth and input size: EfficientNet-Lite0 fed at 128 px
# (a resize inside the graph, 3.4 M parameters) differed by 3.8e-4 on PneumoniaMNIST with every argmax equal.
# The argmax must agree on every image regardless; this bounds the logits as np.allclose(rtol=atol=1e-3).
TOLERANCE = 1e-3


def resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of `to_tensor`'s bilinear resize along one axis (it is separable):
    antialiased when it downscales."""
    width = 4  # a width of 1 takes another code path in torch; any other width gives the same weights
    eye = torch.eye(n_in).view(n_in, 1, n_in, 1).expand(n_in, 1, n_in, width).contiguous()
    out = F.interpolate(eye, size=(n_out, width), mode="bilinear", align_corners=False, antialias=n_out < n_in)
    return out[:, 0, :, 0].T.contiguous()


class RawImageModel(nn.Module):
    """uint8 images as stored in the npz -> logits: `to_tensor` and the network in one graph.

    When the network's resolution is not the images' (`source_size`), the resize is two matrix products
    with `to_tensor`'s weights, equal to it within float rounding: ONNX has no antialiased downscale, and
    its bilinear upscale (an ImageNet network fed at 64 px) differs from torch's by 2e-4 in the logits."""

    def __init__(self, net: nn.Module, channels: int, size: int, source_size: int | None = None):
        super().__init__()
        self.net, self.channels, self.size = net, channels, size
        resized = source_size is not None and size != source_size
        self.register_buffer("resize", resize_matrix(source_size, size) if resized else None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.resize is None:
            return self.net(to_tensor(images, channels=self.channels, size=self.size))
        # The resize weights of each output pixel sum to 1, so resizing after normalising is the same.
        x = to_tensor(images, channels=self.channels)
        return self.net(torch.matmul(torch.matmul(self.resize, x), self.resize.T))


def npz_layout(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) -> (N, H, W): greyscale images as MedMNIST npz files store them (RGB unchanged)."""
    return images[..., 0] if images.ndim == 4 and images.shape[-1] == 1 else images


@dataclass
class ExportReport:
    path: Path
    opset: int
    max_abs_diff: float
    argmax_agree: float
    images_checked: int
    input_shape: list


def metadata(cfg: ModelConfig, spec: DatasetSpec, extra: dict | None = None) -> dict[str, str]:
    """What a runtime needs to feed the model without our code, as ONNX `metadata_props`: the network's
    config (`mednns.cfg.*`) and the raw input it takes (`spec`: the npz's channels and resolution)."""
    props = {
        "mednns.input": "uint8 images as stored in the npz: (N, H, W) greyscale or (N, H, W, 3) RGB",
        "mednns.input_layout": "NHW" if spec.channels == 1 else "NHWC",
        "mednns.source_channels": str(spec.channels),
        "mednns.source_resolution": str(spec.image_size),
        "mednns.preprocessing": (f"x / 255, channels -> {cfg.in_channels} (grey repeated, or RGB BT.601 luma), "
                                 f"bilinear resize to {cfg.image_size}, (x - {cfg.mean}) / {cfg.std}; inside the graph"),
        "mednns.output": "logits (N, classes): softmax for multi-class / binary, sigmoid per label for multi-label",
        "mednns.config": cfg.to_json(),
        **{f"mednns.cfg.{k}": v for k, v in cfg.tags().items()},
    }
    props.update({f"mednns.{k}": str(v) for k, v in (extra or {}).items()})
    return props


def onnx_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(net: nn.Module, spec: DatasetSpec, path: str | Path, check_images: np.ndarray, *,
                extra_metadata: dict | None = None, tolerance: float = TOLERANCE) -> ExportReport:
    """Export `net` (fed as its `cfg` says) for raw images of `spec`, verify it, then write `path`.

    `check_images` are real images of the dataset (its val split, as `MedDataset.images` holds them):
    onnxruntime must give the same logits as PyTorch on them, within `tolerance`, with the same argmax.
    """
    import onnx

    check_images = npz_layout(check_images)
    path = Path(path)
    if path.suffix != ".onnx":
        raise MedNNSError(f"{path}: an ONNX file name must end in .onnx")
    cfg: ModelConfig = net.cfg
    model = RawImageModel(net.cpu().eval(), cfg.in_channels, cfg.image_size,
                          source_size=int(check_images.shape[1])).eval()
    example = torch.as_tensor(check_images[:2])
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        proto = onnx.load(str(tmp))
        for key, value in metadata(cfg, spec, extra_metadata).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        report = verify_onnx(tmp, model, check_images, tolerance)
        report.path = path
    log.info("exported %s (opset %d): max |onnx - torch| %.2e on %d val images", path, OPSET,
             report.max_abs_diff, report.images_checked)
    return report


@torch.inference_mode()
def verify_onnx(path: Path, model: nn.Module, images: np.ndarray, tolerance: float = TOLERANCE,
                batch: int = 256) -> ExportReport:
    """onnxruntime against PyTorch on `images`; raises MedNNSError when they disagree."""
    session = onnx_session(path)
    worst, worst_scaled, agree = 0.0, 0.0, 0
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        (onnx_logits,) = session.run(None, {"images": x})
        torch_logits = model(torch.as_tensor(x)).numpy()
        diff = np.abs(onnx_logits - torch_logits)
        worst = max(worst, float(diff.max()))
        # np.allclose's rule with atol = rtol = tolerance: float32 noise grows with the logits' size.
        worst_scaled = max(worst_scaled, float((diff / (1.0 + np.abs(torch_logits))).max()))
        agree += int((onnx_logits.argmax(1) == torch_logits.argmax(1)).sum())
    if worst_scaled > tolerance or agree != len(images):
        raise MedNNSError(f"ONNX export disagrees with PyTorch (max abs diff {worst:.2e}, argmax agrees on "
                          f"{agree}/{len(images)} images); no file written")
    return ExportReport(path, OPSET, worst, agree / len(images), len(images), list(images.shape[1:]))


def onnx_predict(path: str | Path, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Logits of an exported file for uint8 images (npz or `MedDataset` layout), through onnxruntime."""
    session = onnx_session(Path(path))
    images = npz_layout(images)
    return np.concatenate([session.run(None, {"images": images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)])
