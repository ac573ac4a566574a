"""What a network is and what it takes, carried by the network itself (as timm's `pretrained_cfg`).

One `ModelConfig` rebuilds the network (`mednns.nn.create_model(cfg)`: random init, or with a state dict)
and says how to feed it. Export metadata, model cards, registry tags and the fine-tuning input format
are all derived from it, so they cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from mednns.data.tensors import MEAN, STD


@dataclass(frozen=True)
class ModelConfig:
    architecture: str                 # "mbconv" (a subnet of a SearchSpace), "resnet18", "efficientnet_lite0"
    in_channels: int
    image_size: int
    num_classes: int
    task: str                         # a `Task` value of the head's dataset
    class_names: tuple[str, ...] = ()
    source: str = ""                  # dataset the weights were trained on ("" for random init)
    arch: str = ""                    # canonical Arch JSON ("mbconv" only)
    space: dict = field(default_factory=dict)   # SearchSpace.to_dict() ("mbconv" only)
    mean: float = MEAN
    std: float = STD
    classifier: str = "classifier"    # the attribute holding the final nn.Linear
    # How a zoo subnet's BatchNorm statistics were re-estimated before it was scored (images, seed,
    # batch of the source's train split); empty when its statistics are the supernet's or trained.
    recalibration: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def arch_id(self) -> str:
        from mednns.nn.space import Arch

        return Arch.from_json(self.arch).arch_id if self.arch else ""

    def with_head(self, task: str, num_classes: int, class_names=()) -> "ModelConfig":
        """The same body with a new classifier for another dataset (fine-tuning)."""
        return replace(self, task=task, num_classes=num_classes,
                       class_names=tuple(class_names) or tuple(str(i) for i in range(num_classes)))

    def tags(self) -> dict[str, str]:
        """Flat string form (registry tags, ONNX metadata): every field, lists and mappings as JSON."""
        out = {}
        for k, v in self.to_dict().items():
            if k == "space":
                continue  # the arch JSON and the architecture name identify the network; the space is long
            out[k] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else str(v)
        out["arch_id"] = self.arch_id
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "ModelConfig":
        return cls.from_dict(json.loads(s))
