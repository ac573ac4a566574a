"""The MBConv search space: what an architecture is and how to sample, encode and count them."""
from __future__ import annotations

import hashlib
import json
import operator
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

# MedMNIST's native resolution; larger images are strided down to about this size in the stem.
BASE_RESOLUTION = 28


def _int_tuple(values: Sequence[Any]) -> tuple[int, ...]:
    # operator.index accepts numpy integers but rejects floats, so 3.0 or 3.7 cannot sneak in.
    return tuple(operator.index(v) for v in values)


@dataclass(frozen=True)
class Arch:
    """One subnet: active depth per stage, kernel size and expand ratio per block slot.

    `kernels` and `expands` hold `n_stages * max_depth` slots, stage by stage. Slots beyond a
    stage's depth do not exist in the network, so they are set to 0: two descriptions of the same
    network compare, hash and serialise identically.
    """

    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]

    def __post_init__(self) -> None:
        depths, kernels, expands = (_int_tuple(v) for v in (self.depths, self.kernels, self.expands))
        if not depths:
            raise ValueError("an Arch needs at least one stage")
        if len(kernels) != len(expands) or len(kernels) % len(depths):
            raise ValueError(
                f"kernels ({len(kernels)}) and expands ({len(expands)}) must both hold "
                f"n_stages * max_depth slots for {len(depths)} stages"
            )
        max_depth = len(kernels) // len(depths)
        active = [slot % max_depth < depths[slot // max_depth] for slot in range(len(kernels))]
        # Frozen dataclass: canonical values have to be written past __setattr__.
        object.__setattr__(self, "depths", depths)
        object.__setattr__(self, "kernels", tuple(k if a else 0 for k, a in zip(kernels, active)))
        object.__setattr__(self, "expands", tuple(e if a else 0 for e, a in zip(expands, active)))

    def to_dict(self) -> dict[str, list[int]]:
        return {"depths": list(self.depths), "kernels": list(self.kernels), "expands": list(self.expands)}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[int]]) -> Arch:
        return cls(depths=tuple(d["depths"]), kernels=tuple(d["kernels"]), expands=tuple(d["expands"]))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the basis of `arch_id`, so never change it."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> Arch:
        return cls.from_dict(json.loads(s))

    @property
    def arch_id(self) -> str:
        """Short content hash, identical across machines and runs (unlike `hash()`)."""
        return hashlib.sha1(self.to_json().encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class SearchSpace:
    stem_width: int = 16
    widths: tuple[int, ...] = (24, 40, 80, 128)  # output channels per stage
    # First-block stride per stage: 28 px -> 14 -> 7 -> 7 -> 4 keeps spatial detail at 28 px.
    strides: tuple[int, ...] = (2, 2, 1, 2)
    depth_choices: tuple[int, ...] = (2, 3, 4)
    kernel_choices: tuple[int, ...] = (3, 5, 7)
    expand_choices: tuple[int, ...] = (3, 4, 6)
    head_width: int = 256  # final 1x1 conv before pooling (not elastic)

    def __post_init__(self) -> None:
        for name in ("widths", "strides", "depth_choices", "kernel_choices", "expand_choices"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name)))
        if len(self.widths) != len(self.strides):
            raise ValueError(f"{len(self.widths)} widths but {len(self.strides)} strides")
        if not (self.depth_choices and self.kernel_choices and self.expand_choices):
            raise ValueError("depth, kernel and expand choices must be non-empty")
        if any(k % 2 == 0 for k in self.kernel_choices):
            raise ValueError(f"kernel sizes must be odd (smaller ones are centre crops): {self.kernel_choices}")
        if min(self.depth_choices) < 1 or min(self.expand_choices) < 1:
            raise ValueError("depths and expand ratios must be >= 1")

    @property
    def n_stages(self) -> int:
        return len(self.widths)

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    @property
    def encoding_size(self) -> int:
        n_slots = self.n_stages * self.max_depth
        per_slot = len(self.kernel_choices) + len(self.expand_choices)
        return self.n_stages * len(self.depth_choices) + n_slots * per_slot

    def validate(self, arch: Arch) -> None:
        """Raise ValueError unless `arch` describes a network of this space."""
        n_slots = self.n_stages * self.max_depth
        if len(arch.depths) != self.n_stages:
            raise ValueError(f"arch has {len(arch.depths)} stages, space has {self.n_stages}")
        if len(arch.kernels) != n_slots:
            raise ValueError(f"arch has {len(arch.kernels)} block slots, space has {n_slots}")
        for stage, depth in enumerate(arch.depths):
            if depth not in self.depth_choices:
                raise ValueError(f"stage {stage} depth {depth} not in {self.depth_choices}")
            for slot in range(stage * self.max_depth, stage * self.max_depth + depth):
                kernel, expand = arch.kernels[slot], arch.expands[slot]
                if kernel not in self.kernel_choices:
                    raise ValueError(f"block slot {slot} kernel {kernel} not in {self.kernel_choices}")
                if expand not in self.expand_choices:
                    raise ValueError(f"block slot {slot} expand {expand} not in {self.expand_choices}")

    def _uniform(self, depth: int, kernel: int, expand: int) -> Arch:
        n_slots = self.n_stages * self.max_depth
        return Arch((depth,) * self.n_stages, (kernel,) * n_slots, (expand,) * n_slots)

    def largest(self) -> Arch:
        return self._uniform(max(self.depth_choices), max(self.kernel_choices), max(self.expand_choices))

    def smallest(self) -> Arch:
        return self._uniform(min(self.depth_choices), min(self.kernel_choices), min(self.expand_choices))

    def sample(self, rng: np.random.Generator) -> Arch:
        """Uniform depth per stage, then uniform kernel and expand per active block."""
        depths = [self.depth_choices[rng.integers(len(self.depth_choices))] for _ in range(self.n_stages)]
        kernels, expands = [], []
        for depth in depths:
            for slot in range(self.max_depth):
                active = slot < depth
                kernels.append(self.kernel_choices[rng.integers(len(self.kernel_choices))] if active else 0)
                expands.append(self.expand_choices[rng.integers(len(self.expand_choices))] if active else 0)
        return Arch(tuple(depths), tuple(kernels), tuple(expands))

    def encode(self, arch: Arch) -> np.ndarray:
        """Fixed-length float32 vector: per stage a depth one-hot, per slot kernel and expand one-hots."""
        self.validate(arch)
        parts = [np.asarray(self.depth_choices) == depth for depth in arch.depths]
        for kernel, expand in zip(arch.kernels, arch.expands):
            # Inactive slots hold 0, which matches no choice: an all-zero block.
            parts.append(np.asarray(self.kernel_choices) == kernel)
            parts.append(np.asarray(self.expand_choices) == expand)
        return np.concatenate(parts).astype(np.float32)

    def count(self) -> int:
        """Exact number of distinct architectures."""
        per_block = len(self.kernel_choices) * len(self.expand_choices)
        per_stage = sum(per_block**depth for depth in self.depth_choices)
        return per_stage**self.n_stages

    def stem_stride(self, image_size: int) -> int:
        """Largest power of two <= image_size // 28, so the first stage sees ~28-32 px at any size."""
        ratio = max(1, image_size // BASE_RESOLUTION)
        return 1 << (ratio.bit_length() - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
