import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mednns.nn.space import Arch, SearchSpace
from mednns.nn.supernet import Supernet

SPACE = SearchSpace()
NUM_CLASSES = 5


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Tiny test batches gain nothing from intra-op threads, and on a busy 2-core machine
    # OpenMP spin-waiting makes them 10-100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed_supernet(in_channels: int, image_size: int = 28, seed: int = 0) -> Supernet:
    """A supernet whose BN statistics and kernel transforms are far from their initial values.

    Fresh BN layers (mean 0, var 1, weight 1, bias 0) and identity transforms would hide an
    extraction that takes the wrong channels or skips the transform.
    """
    torch.manual_seed(seed)
    net = Supernet(SPACE, in_channels, NUM_CLASSES, image_size)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        for name, param in net.named_parameters():
            if "transforms" in name:
                param.add_(0.1 * torch.randn_like(param))
    return net


def archs_to_check(n_random: int, seed: int) -> list[Arch]:
    rng = np.random.default_rng(seed)
    return [SPACE.largest(), SPACE.smallest()] + [SPACE.sample(rng) for _ in range(n_random)]


@pytest.mark.parametrize("in_channels", [1, 3])
def test_extracted_subnet_matches_supernet(in_channels):
    net = perturbed_supernet(in_channels).eval()
    x = torch.randn(2, in_channels, 28, 28)
    for arch in archs_to_check(28, seed=in_channels):
        net.set_active(arch)
        subnet = net.extract(arch)
        with torch.no_grad():
            expected = net(x)
            actual = subnet(x)
        assert expected.abs().max() > 1e-2  # a meaningful comparison, not two near-zero outputs
        assert (actual - expected).abs().max() < 1e-5, arch


def test_extracted_subnet_matches_supernet_at_64px():
    net = perturbed_supernet(3, image_size=64).eval()
    arch = SPACE.sample(np.random.default_rng(64))
    net.set_active(arch)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (net.extract(arch)(x) - net(x)).abs().max() < 1e-5


def test_expand_ratio_one_skips_the_expand_conv():
    space = SearchSpace(widths=(16, 24), strides=(1, 2), depth_choices=(1, 2), expand_choices=(1, 2), head_width=32)
    net = Supernet(space, 1, NUM_CLASSES).eval()
    x = torch.randn(2, 1, 28, 28)
    for depth, expand in itertools.product((1, 2), (1, 2)):
        n_slots = space.n_stages * space.max_depth
        arch = Arch(depths=(depth,) * space.n_stages, kernels=(5,) * n_slots, expands=(expand,) * n_slots)
        net.set_active(arch)
        subnet = net.extract(arch)
        assert all((block.expand_conv is None) == (expand == 1) for block in subnet.blocks)
        with torch.no_grad():
            assert (subnet(x) - net(x)).abs().max() < 1e-5


def test_extract_leaves_the_active_arch_alone():
    net = perturbed_supernet(1).eval()
    active, other = archs_to_check(2, seed=5)[2:]
    net.set_active(active)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        before = net(x)
        subnet = net.extract(other)
        assert net.active_arch == active
        assert torch.equal(net(x), before)
    assert subnet.arch == other and not subnet.training


def test_set_active_rejects_archs_outside_the_space():
    net = Supernet(SPACE, 1, NUM_CLASSES)
    bad = Arch(depths=(2, 2, 2, 2), kernels=(9,) + (3,) * 15, expands=(3,) * 16)
    with pytest.raises(ValueError):
        net.set_active(bad)
    with pytest.raises(ValueError):
        net.extract(bad)


def expected_param_count(arch: Arch, in_channels: int, num_classes: int) -> int:
    """Parameters of the network `arch` describes, counted layer by layer (convs have no bias)."""

    def conv_bn(cin: int, cout: int, kernel: int, depthwise: bool = False) -> int:
        weights = cout * kernel * kernel * (1 if depthwise else cin)
        return weights + 2 * cout  # BN weight and bias

    stem = SPACE.stem_width
    count = conv_bn(in_channels, stem, 3)
    count += conv_bn(stem, stem, 3, depthwise=True) + conv_bn(stem, stem, 1)  # first block, expand 1
    cin = stem
    for stage, width in enumerate(SPACE.widths):
        for index in range(arch.depths[stage]):
            slot = stage * SPACE.max_depth + index
            mid = cin * arch.expands[slot]
            count += conv_bn(cin, mid, 1) + conv_bn(mid, mid, arch.kernels[slot], depthwise=True)
            count += conv_bn(mid, width, 1)
            cin = width
    count += conv_bn(cin, SPACE.head_width, 1)
    return count + SPACE.head_width * num_classes + num_classes


@pytest.mark.parametrize("in_channels", [1, 3])
def test_extracted_subnet_holds_only_its_own_parameters(in_channels):
    net = Supernet(SPACE, in_channels, NUM_CLASSES)
    for arch in archs_to_check(5, seed=11):
        subnet = net.extract(arch)
        expected = expected_param_count(arch, in_channels, NUM_CLASSES)
        assert sum(p.numel() for p in subnet.parameters()) == expected, arch
    assert not any("transforms" in name for name, _ in subnet.named_parameters())


def test_channels_last_training_mode_matches_and_updates_active_bn_stats():
    net = perturbed_supernet(3).train().to(memory_format=torch.channels_last)
    arch = SPACE.sample(np.random.default_rng(3))
    net.set_active(arch)
    subnet = net.extract(arch).to(memory_format=torch.channels_last)
    assert subnet.training
    x = torch.randn(8, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (net(x) - subnet(x)).abs().max() < 1e-4
    # Both forwards updated running stats; the supernet's must have changed in its active slices
    # exactly as the standalone subnet's did.
    updated = net.extract(arch).state_dict()
    for name, value in subnet.state_dict().items():
        assert torch.allclose(updated[name], value, atol=1e-5), name


def test_training_steps_update_weights_and_kernel_transforms():
    net = Supernet(SPACE, 1, NUM_CLASSES).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, NUM_CLASSES, (8,))
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    transforms = net.stages[0][0].dw_conv.transforms

    # Sandwich rule: largest, smallest and a random arch in one step.
    optimizer.zero_grad()
    for arch in archs_to_check(1, seed=0):
        net.set_active(arch)
        F.cross_entropy(net(x), y).backward()
    # The smallest arch runs 3x3 kernels, which pass through both transforms.
    assert transforms["7to5"].grad.abs().sum() > 0 and transforms["5to3"].grad.abs().sum() > 0
    optimizer.step()
    shared = ("stem.0.weight", "stages.0.0.dw_conv.weight", "stages.3.0.project_conv.weight", "classifier.weight")
    for name in shared:
        assert not torch.equal(before[name], net.get_parameter(name)), name

    # The largest kernel is the raw weight: no gradient may reach the transforms.
    optimizer.zero_grad(set_to_none=True)
    net.set_active(SPACE.largest())
    F.cross_entropy(net(x), y).backward()
    assert transforms["7to5"].grad is None and transforms["5to3"].grad is None


def test_config_rebuilds_an_equivalent_supernet():
    net = perturbed_supernet(1, image_size=128).eval()
    config = json.loads(json.dumps(net.config()))
    rebuilt = Supernet.from_config(config)
    rebuilt.load_state_dict(net.state_dict())
    rebuilt.eval()
    arch = SPACE.sample(np.random.default_rng(0))
    net.set_active(arch)
    rebuilt.set_active(arch)
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_a_checkpoint_of_an_earlier_release_still_loads(tmp_path):
    """Checkpoints are DVC-versioned for years: the format tag they carry must keep loading."""
    from mednns.data.spec import DatasetSpec, Task
    from mednns.nn.checkpoint import load_supernet

    net = perturbed_supernet(1)
    spec = DatasetSpec("old", Task.BINARY, 1, 2, 28, {"train": 1, "val": 1, "test": 1}, ("a", "b"))
    torch.save({"format": "mednns.supernet/1", "config": net.config(), "spec": spec.to_dict(), "summary": {},
                "state_dict": net.state_dict()}, tmp_path / "old.pt")
    loaded, meta = load_supernet(tmp_path / "old.pt")
    assert meta["spec"].name == "old" and loaded.extract(SPACE.smallest()).cfg.source == "old"
