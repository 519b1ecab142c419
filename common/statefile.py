"""A pure core's state as one dataclass, turned into JSON and back with a version number and migrations.

``dump(state, version)`` gives plain JSON-ready data (nested dataclasses become objects, tuples lists).
``load(cls, data, version, migrations)`` raises an older layout step by step (``migrations[n]`` turns version n
into n + 1) and builds the dataclass again; a field missing or unknown after migration is an error naming it,
never a silent default, so a field added later must come with a migration and a raised version.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
Migration = Callable[[dict[str, Any]], dict[str, Any]]


class StateError(ValueError):
    """Saved state that cannot be loaded; the message says which version or field."""


def dump(state: Any, version: int) -> dict[str, Any]:
    """``state`` (a dataclass) as JSON-ready data with ``version``."""
    return {"version": version, **_plain(state)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def load(cls: type[T], data: Mapping[str, Any], version: int, migrations: Mapping[int, Migration]) -> T:
    """Build ``cls`` from ``data`` saved at any version up to ``version`` (a copy: ``data`` is never shared)."""
    body = copy.deepcopy(dict(data))
    found = body.pop("version", None)
    if not isinstance(found, int) or found > version:
        raise StateError(f"state version {found!r}: this code reads versions up to {version}")
    while found < version:
        step = migrations.get(found)
        if step is None:
            raise StateError(f"state version {found}: no migration to version {found + 1}")
        body = step(body)
        found += 1
    return _build(cls, body, cls.__name__)


def _build(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise StateError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    missing = sorted(names - set(data))
    if unknown or missing:
        raise StateError(f"{where}: unknown fields {unknown}, missing fields {missing}")
    return cls(**{name: _value(hints[name], data[name], f"{where}.{name}") for name in names})


def _value(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _value(inner[0], value, where) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (list, tuple) and args and dataclasses.is_dataclass(args[0]):
        items = [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict and len(args) == 2:
        convert = int if args[0] is int else str
        return {convert(k): _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int):
        return float(value)
    return value
