"""Stage settings from a `params.yaml` section into a config dataclass, refusing unknown keys."""

from __future__ import annotations

from dataclasses import fields

from mednns.errors import MedNNSError


def from_section(cls, params: dict, section: str, ignore: tuple[str, ...] = ()):
    """`cls(**params)`; a key `cls` does not know (a typo, a removed knob) is a one-line user error."""
    names = {f.name for f in fields(cls)}
    unknown = set(params) - names - set(ignore)
    if unknown:
        raise MedNNSError(f"params.yaml {section}: unknown setting(s) {', '.join(sorted(unknown))}")
    return cls(**{k: v for k, v in params.items() if k in names})
