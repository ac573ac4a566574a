"""The zoo's whole networks and the params.yaml section each is trained with: shared by the stage that trains
them (`pretrain`) and the one that trains them again without a left-out target (`selection_benchmark`)."""

from mednns.train.continual import ContinualConfig
from pipelines.stage import config

# name (`mednns.selector.pretrained.ZOO_NETWORKS`) -> params section. dvc.yaml's `pretrain` foreach names the
# default ones with the same sections (tests/test_continual.py holds them equal); resnet18_zoo is opt-in:
# `python -m pipelines.pretrain --network resnet18_zoo` writes it.
SECTIONS = {"efficientnet_lite0_zoo": "continual", "resnet18_zoo": "continual_resnet18"}


def network_configs(changed: dict | None = None) -> dict[str, ContinualConfig]:
    return {name: config(section, ContinualConfig, changed) for name, section in SECTIONS.items()}
