"""The one config rule: a `params.yaml` section becomes a frozen config dataclass, or one line says why not.

Every stage's settings are a dataclass whose defaults equal `params.yaml` (a test holds them to it).
`from_section` refuses a key the dataclass does not know (a typo, a removed knob) and a value of the
wrong type, naming the section, the key and what was expected.
"""

from __future__ import annotations

import typing
from dataclasses import fields

from mednns.utils.errors import MedNNSError

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               dict: "a mapping", tuple: "a list"}


def _coerce(value, hint, where: str):
    """`value` as the annotated type `hint` (ints are numbers; lists become tuples), or MedNNSError."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except MedNNSError:
                continue
        raise MedNNSError(f"{where}: {value!r} is not {' or '.join(_TYPE_NAMES.get(a, str(a)) for a in args)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise MedNNSError(f"{where}: expected a list, got {value!r}")
        (item, *_rest) = typing.get_args(hint) or (typing.Any,)
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise MedNNSError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is typing.Any:
        return value
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}.get(hint)
    if ok is None:
        return value
    if not ok:
        raise MedNNSError(f"{where}: expected {_TYPE_NAMES[hint]}, got {value!r}")
    return float(value) if hint is float else value


def from_section(cls, params: dict | None, section: str):
    """`cls(**params)` with every key known to `cls` and every value of its field's type."""
    params = params or {}
    if not isinstance(params, dict):
        raise MedNNSError(f"params.yaml {section}: expected a mapping of settings, got {params!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(params) - names
    if unknown:
        raise MedNNSError(f"params.yaml {section}: unknown setting(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(v, hints[k], f"params.yaml {section}.{k}") for k, v in params.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise MedNNSError(f"params.yaml {section}: {e}") from None
