"""What a config section asks for, read from its dataclass: one ``Knob`` per settable leaf, and text -> value.

``provision init`` builds its role flags and prompts from these, so a field a role engineer adds to a role
section appears in ``provision init --role ROLE --help`` without a change here.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.config import ROLE_SECTIONS, ButtonPin, InputPin, LedPin, SerialPort, bounds_problem

PIN_TYPES: tuple[type, ...] = (InputPin, ButtonPin, LedPin)

# leaves worth a question even though they have a default: how a pin is wired, how fast the bus runs, the
# kiosk screen (the official 7" screen is 800x480, not the default)
ASKED_WITH_DEFAULT = {"active_high", "pull_up", "baudrate", "parity", "width", "height", "rotation"}


class BadValue(ValueError):
    """Text that cannot become the value a setting needs; the message says what is allowed."""


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) for ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # noqa: UP007 - rebuilding a runtime union
    return tp, False


def describe(tp: Any) -> str:
    """Allowed values in words, for prompts and errors."""
    tp, _ = unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "/".join(str(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "comma-separated " + describe(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    return {bool: "yes/no", int: "integer", float: "number", str: "text", Path: "path"}.get(tp, str(tp))


def parse_text(tp: Any, text: str) -> Any:
    """Turn the technician's text into a TOML-ready value of type ``tp``; ``None`` for blank optional values."""
    inner, optional = unwrap_optional(tp)
    text = text.strip()
    if optional and text.lower() in {"none", "-"}:
        return None
    if text == "" and (optional or inner is not str):
        if optional:
            return None
        raise BadValue(f"a value is needed ({describe(inner)})")
    origin = typing.get_origin(inner)
    if origin is Literal:
        for allowed in typing.get_args(inner):
            if str(allowed).lower() == text.lower():
                return allowed
        raise BadValue(f"{text!r} is not allowed; allowed: {describe(inner)}")
    if origin in (tuple, list):
        item_tp = typing.get_args(inner)[0]
        return [parse_text(item_tp, part) for part in text.split(",") if part.strip()]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(inner):
            try:
                return parse_text(arg, text)
            except BadValue:
                continue
        raise BadValue(f"{text!r} is not {describe(inner)}")
    if inner is bool:
        low = text.lower()
        if low in {"y", "yes", "true", "1", "on"}:
            return True
        if low in {"n", "no", "false", "0", "off"}:
            return False
        raise BadValue(f"{text!r} is not yes/no")
    if inner is int:
        try:
            return int(text, 10)
        except ValueError:
            raise BadValue(f"{text!r} is not an integer") from None
    if inner is float:
        try:
            number = float(text)
        except ValueError:
            raise BadValue(f"{text!r} is not a number") from None
        if math.isnan(number) or math.isinf(number):
            raise BadValue(f"{text!r} is not a finite number")
        return number
    if inner in (str, Path):
        return text
    raise BadValue(f"cannot enter a {describe(inner)} here; use --set")


def check_bounds(f: dataclasses.Field, value: Any) -> None:
    """The same min/max/pattern a ``setting()`` carries (the node's own check), as soon as a value is typed."""
    for v in value if isinstance(value, list) else [value]:
        problem = bounds_problem(f, v)
        if problem is not None:
            raise BadValue(f"{v!r}: {problem}")


@dataclass(frozen=True)
class Knob:
    """One settable leaf of a config section: where it goes, its flag, its type and how to ask for it."""

    path: tuple[str, ...]  # keys in the TOML document, e.g. ("elevator", "door", "pin")
    flag: str  # e.g. "--door-pin"
    tp: Any
    field: dataclasses.Field
    required: bool  # the node refuses the config without it
    ask: bool  # asked interactively when no flag gave it
    group: tuple[str, ...]  # the table this leaf belongs to, e.g. ("elevator", "door")
    group_optional: bool  # the whole table may be left out (a sensor that is not fitted)

    @property
    def key(self) -> str:
        # array indexes read as meter.meters[0].id, not meter.meters.[0].id
        return ".".join(self.path).replace(".[", "[")

    @property
    def default(self) -> Any:
        if self.field.default is not dataclasses.MISSING:
            return self.field.default
        return None

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    def parse(self, text: str) -> Any:
        if self.group_optional and text.strip().lower() in {"", "none", "-"}:
            return None  # a sensor that is not fitted: its table stays out of the config
        value = parse_text(self.tp, text)
        if value is not None:
            check_bounds(self.field, value)
        return value


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _leaf_type(tp: Any) -> bool:
    inner, _ = unwrap_optional(tp)
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        return _leaf_type(typing.get_args(inner)[0])
    return not dataclasses.is_dataclass(inner) and origin not in (dict, typing.Mapping)


def knobs_of(cls: type, path: tuple[str, ...], flag_prefix: str, *, required: bool = True) -> list[Knob]:
    """Every settable leaf of dataclass ``cls`` placed at ``path``; nested tables become flag prefixes.

    Arrays of tables (a list of meters) are not knobs: see ``table_arrays_of``.
    """
    out: list[Knob] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        inner, optional = unwrap_optional(tp)
        dashed = f.name.replace("_", "-")
        flag = f"{flag_prefix}-{dashed}" if flag_prefix else f"--{dashed}"
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            table_required = required and not has_default(f) and not optional
            out += knobs_of(inner, (*path, f.name), flag, required=table_required)
            continue
        if not _leaf_type(tp):
            continue
        leaf_required = required and not has_default(f)
        in_table = len(path) > 1
        # identity text and choices at the top of a role section (building, lift, pickup point, occupancy
        # kind) are always asked
        top_inner = unwrap_optional(tp)[0]
        at_role_top = len(path) == 1 and path[0] in ROLE_SECTIONS
        identity = at_role_top and (top_inner is str or typing.get_origin(top_inner) is Literal)
        ask = leaf_required or f.name in ASKED_WITH_DEFAULT or (f.name == "pin" and in_table) or identity
        out.append(
            Knob(
                path=(*path, f.name),
                flag=flag,
                tp=tp,
                field=f,
                required=leaf_required,
                ask=ask,
                group=path,
                group_optional=not required,
            )
        )
    return out


@dataclass(frozen=True)
class TableArray:
    """An array of tables in a role section (e.g. ``[[meter.meters]]``): entered as repeated flags."""

    path: tuple[str, ...]
    flag: str  # e.g. "--meter"
    item_cls: type
    required: bool
    help: str

    def knobs(self) -> list[Knob]:
        return knobs_of(self.item_cls, (), "")


def table_arrays_of(cls: type, path: tuple[str, ...]) -> list[TableArray]:
    """The arrays of tables of ``cls`` (one level deep)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner, _ = unwrap_optional(hints[f.name])
        if typing.get_origin(inner) in (tuple, list):
            item = typing.get_args(inner)[0]
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                singular = f.name[:-1] if f.name.endswith("s") and len(f.name) > 1 else f.name
                out.append(
                    TableArray(
                        path=(*path, f.name),
                        flag="--" + singular.replace("_", "-"),
                        item_cls=item,
                        required=not has_default(f),
                        help=f.metadata.get("help", ""),
                    )
                )
    return out


def is_pin_table(cls: Any) -> bool:
    inner, _ = unwrap_optional(cls)
    return inner in PIN_TYPES


def is_serial_table(cls: Any) -> bool:
    inner, _ = unwrap_optional(cls)
    return inner is SerialPort
