"""Contracts every subnet keeps, parametrised over arch corners and sampled archs x input channels x image
size (as timm tests its models): extraction computes what the supernet computes, the config rebuilds the
same network, BatchNorm folding keeps the outputs, and the ONNX export matches PyTorch in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mednns.data.spec import DatasetSpec, Task
from mednns.nn import ModelConfig, SearchSpace, Supernet, create_model
from mednns.nn.bn import fold_bn
from mednns.selector.export import export_onnx, onnx_predict
from mednns.train.supernet import median_arch
from test_supernet import NUM_CLASSES, perturbed_supernet

SPACE = SearchSpace()
ARCHS = {"largest": SPACE.largest(), "smallest": SPACE.smallest(), "median": median_arch(SPACE),
         **{f"sampled{i}": SPACE.sample(np.random.default_rng(i)) for i in range(2)}}
CASES = [(a, c, s) for a in ARCHS for c in (1, 3) for s in (28, 64)]

pytestmark = pytest.mark.usefixtures("one_thread")


def _supernet(channels: int, size: int) -> Supernet:
    return perturbed_supernet(channels, size, seed=channels * 100 + size).eval()


@pytest.mark.parametrize("arch,channels,size", CASES)
def test_a_subnet_is_the_supernet_slice_its_config_rebuilds(arch, channels, size):
    supernet = _supernet(channels, size)
    supernet.set_active(ARCHS[arch])
    net = supernet.extract(ARCHS[arch])
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        expected = supernet(x)
        assert expected.abs().max() > 1e-2
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)
        rebuilt = create_model(ModelConfig.from_json(net.cfg.to_json()), net.state_dict())
        assert torch.equal(rebuilt(x), net(x))
        torch.testing.assert_close(fold_bn(net)(x), net(x), rtol=1e-4, atol=1e-4)
    cfg = net.cfg
    assert (cfg.in_channels, cfg.image_size, cfg.num_classes, cfg.arch_id) == (channels, size, NUM_CLASSES,
                                                                           ARCHS[arch].arch_id)


@pytest.mark.parametrize("arch,channels,size", [c for c in CASES if c[0] in ("largest", "smallest", "sampled0")])
def test_a_subnet_exports_to_onnx_that_matches_pytorch(tmp_path, arch, channels, size):
    net = _supernet(channels, size).extract(ARCHS[arch])
    rng = np.random.default_rng(0)
    shape = (6, size, size) if channels == 1 else (6, size, size, 3)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    spec = DatasetSpec("toy", Task.MULTI_CLASS, channels, NUM_CLASSES, size, {"train": 6, "val": 6, "test": 6})
    report = export_onnx(net, spec, tmp_path / "m.onnx", images[..., None] if channels == 1 else images)
    assert report.max_abs_diff <= 1e-4 and report.argmax_agree == 1.0
    from mednns.data.tensors import to_tensor

    with torch.no_grad():
        expected = net(to_tensor(images, channels=channels, size=size)).numpy()
    np.testing.assert_allclose(onnx_predict(tmp_path / "m.onnx", images), expected, atol=1e-4)
