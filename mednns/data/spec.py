"""What a dataset is: its task, shape and splits, independent of where its pixels live."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

SPLITS = ("train", "val", "test")


class Task(str, Enum):
    MULTI_CLASS = "multi-class"
    BINARY = "binary-class"
    MULTI_LABEL = "multi-label"
    ORDINAL = "ordinal-regression"

    @classmethod
    def parse(cls, text: str) -> "Task":
        """Accept our names and medmnist's INFO strings ('multi-label, binary-class')."""
        text = text.strip().lower()
        if text.startswith("multi-label"):
            return cls.MULTI_LABEL
        for task in cls:
            if task.value == text:
                return task
        raise ValueError(f"unknown task {text!r}; expected one of {', '.join(t.value for t in cls)}")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: Task
    channels: int
    num_classes: int  # number of labels for multi-label tasks
    image_size: int
    splits: dict[str, int] = field(default_factory=dict)
    label_names: tuple[str, ...] = ()
    source: str = ""  # "medmnist" or the npz path it was read from

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task"] = self.task.value
        d["label_names"] = list(self.label_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        d = dict(d)
        d["task"] = Task.parse(d["task"])
        d["label_names"] = tuple(d.get("label_names", ()))
        d["splits"] = dict(d.get("splits", {}))
        return cls(**d)
