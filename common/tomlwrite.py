"""Write a node config as TOML text (tomllib only reads): tables, inline tables for pins, arrays of tables."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def key(name: str) -> str:
    """A TOML key, quoted only when it must be."""
    return name if _BARE_KEY.match(name) else string(name)


def string(text: str) -> str:
    """A TOML basic string; control characters escaped, everything else (CJK included) kept as UTF-8."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def value(v: Any) -> str:
    """One TOML value; tables become inline tables."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError(f"{v!r} has no place in a node config")
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, Path):
        return string(str(v))
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, Sequence):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _small_table(v: Mapping[str, Any]) -> bool:
    # pins and similar short tables read best inline: door = { pin = 17, active_high = false }
    return all(not isinstance(x, Mapping) and not _is_table_array(x) for x in v.values()) and len(v) <= 5


def _own_header(v: Any, top: bool) -> bool:
    if _is_table_array(v):
        return True
    # top-level tables always get a header: [node], [central] read better than inline tables
    return isinstance(v, Mapping) and (top or not _small_table(v))


def _emit(lines: list[str], name: str, table: Mapping[str, Any], *, header: bool) -> None:
    top = not name
    plain = {k: v for k, v in table.items() if not _own_header(v, top)}
    nested = {k: v for k, v in table.items() if _own_header(v, top)}
    if header and (plain or not nested):
        lines.append(f"[{name}]")
    for k, v in plain.items():
        lines.append(f"{key(k)} = {value(v)}")
    if plain or (header and not nested):
        lines.append("")
    for k, v in nested.items():
        full = f"{name}.{key(k)}" if name else key(k)
        if _is_table_array(v):
            for item in v:
                lines.append(f"[[{full}]]")
                _emit(lines, full, item, header=False)
                if lines[-1] != "":
                    lines.append("")
        else:
            _emit(lines, full, v, header=True)


def dumps(document: Mapping[str, Any], header: str = "") -> str:
    """A whole document: tables become ``[section]``s, arrays of tables ``[[name]]``; ``header`` lines
    become comments at the top."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    _emit(lines, "", document, header=False)
    return "\n".join(lines).rstrip("\n") + "\n"
