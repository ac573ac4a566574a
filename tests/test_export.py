"""ONNX export: raw npz images in, PyTorch's logits out, preprocessing in the metadata, nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import TINY_SPACE, tiny_dataset
from mednns.utils.errors import MedNNSError
from mednns.selector.export import RawImageModel, export_onnx, npz_layout, onnx_predict, verify_onnx
from mednns.nn.config import ModelConfig
from mednns.selector.finetune import FinetuneConfig, fit_head
from mednns.selector.pretrained import pretrained_net
from mednns.train.loop import score_split
from mednns.nn.space import SearchSpace
from mednns.nn.supernet import Supernet

SPACE = SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_SPACE.items()})


def _adapted_subnet(ds, in_channels=3, size=16):
    """A subnet of a supernet made for other data (3 channels), with a head fit on `ds`."""
    torch.manual_seed(0)
    supernet = Supernet(SPACE, in_channels, 5, size).eval()
    net = supernet.extract(SPACE.sample(np.random.default_rng(2))).eval()
    return fit_head(net, ds, FinetuneConfig(head_images=96))


@pytest.mark.parametrize("channels", [1, 3])
def test_export_takes_raw_npz_images_and_matches_pytorch(tmp_path, channels):
    ds = tiny_dataset(classes=4, channels=channels)
    net = _adapted_subnet(ds)
    path = tmp_path / "model.onnx"
    report = export_onnx(net, ds.spec, path, ds.images("val"), extra_metadata={"run": "abc"})
    assert path.is_file() and report.max_abs_diff <= 1e-4 and report.argmax_agree == 1.0
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # dynamic batch axis
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    # The file carries the network's config: rebuilt from it, it is the network that was exported.
    assert ModelConfig.from_json(meta["mednns.config"]) == net.cfg
    assert json.loads(meta["mednns.cfg.class_names"]) == list(ds.spec.label_names)
    assert meta["mednns.cfg.arch_id"] == net.arch.arch_id and meta["mednns.cfg.in_channels"] == "3"
    assert meta["mednns.input_layout"] == ("NHW" if channels == 1 else "NHWC")
    assert meta["mednns.cfg.mean"] == "0.5" and meta["mednns.run"] == "abc"
    # Raw test images as stored in the npz: greyscale (N, H, W), RGB (N, H, W, 3); any batch size.
    raw = npz_layout(ds.images("test"))
    assert raw.ndim == (3 if channels == 1 else 4)
    for batch in (1, 7, len(raw)):
        logits = onnx_predict(path, raw[:batch])
        expected = net(torch.as_tensor(ds.images("test")[:batch]).permute(0, 3, 1, 2).float()
                       .div(255).expand(-1, 3, -1, -1).sub(0.5).div(0.5)).detach().numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
    acc = float((onnx_predict(path, raw).argmax(1) == ds.labels("test")[:, 0]).mean())
    assert acc == pytest.approx(score_split(net, ds, "test")["acc"])
    assert acc > 0.5  # the fitted head learned the synthetic classes (chance is 0.25)


def test_a_disagreeing_export_is_refused_and_leaves_no_file(tmp_path):
    ds = tiny_dataset(classes=4, channels=1)
    net = _adapted_subnet(ds)
    path = tmp_path / "model.onnx"
    with pytest.raises(MedNNSError, match="disagrees with PyTorch"):
        export_onnx(net, ds.spec, path, ds.images("val"), tolerance=-1.0)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    # An exported file checked against a different network is caught too.
    export_onnx(net, ds.spec, path, ds.images("val"))
    other = _adapted_subnet(tiny_dataset(classes=4, channels=1, seed=5))
    with torch.no_grad():
        other.classifier.weight.mul_(-1)
    with pytest.raises(MedNNSError):
        verify_onnx(path, RawImageModel(other, other.cfg.in_channels, other.cfg.image_size), npz_layout(ds.images("val")))


def test_export_refuses_a_name_that_is_not_onnx(tmp_path):
    ds = tiny_dataset(classes=4, channels=1)
    net = _adapted_subnet(ds)
    with pytest.raises(MedNNSError, match="must end in .onnx"):
        export_onnx(net, ds.spec, tmp_path / "model.pt", ds.images("val"))


def test_the_default_pretrained_candidate_at_128_px_exports_and_agrees(tmp_path):
    """The selector's default pick (ImageNet EfficientNet-Lite0, resized to 128 px inside the graph) exports:
    float32 noise in a network this deep once exceeded a tolerance made for the zoo's small subnets."""
    ds = tiny_dataset(classes=3, channels=1)
    net = fit_head(pretrained_net("efficientnet_lite0", ds.spec, 128), ds, FinetuneConfig(head_images=96)).eval()
    path = tmp_path / "model.onnx"
    report = export_onnx(net, ds.spec, path, ds.images("val"))
    assert report.argmax_agree == 1.0 and path.is_file()
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["mednns.cfg.image_size"] == "128"
    raw = npz_layout(ds.images("test"))
    assert (onnx_predict(path, raw).argmax(1) == ds.labels("test")[:, 0]).mean() == pytest.approx(
        score_split(net, ds, "test")["acc"])
