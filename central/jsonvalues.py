"""The one check of every JSON value the central stores, and the safe reading of values already stored.

A value the central keeps (an event's payload, a heartbeat, a registration) must be readable back by every
client and every later version: nested at most ``MAX_DEPTH`` deep, numbers finite, integers within 64 bits (SQLite
and PostgreSQL integers), text valid Unicode (no lone surrogates, which UTF-8 cannot encode). ``problems()`` says
what is wrong with a value, by JSON path; request bodies are checked with it before they are validated further
(``StoredBody``), so a new body type gets the check by inheriting. ``readable()`` makes a value stored before these
rules existed safe to answer, and ``parse_json()`` parses a request body without letting a hostile document
raise anything but a decode error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_PROBLEMS = 5
# validation context: the caller ran ``problems()`` on the whole value already (an event of a batch: it is checked
# first so its rejection names the path); ``StoredBody`` then does not walk it a second time
CHECKED = "storable_checked"


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else "integer outside the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a JSON number (NaN and Infinity are refused)"
    if isinstance(value, str):
        return None if _valid_text(value) else "text with a lone surrogate (not valid Unicode)"
    return f"{type(value).__name__} is not a JSON value"


def _children(value: Any, path: str) -> Iterator[tuple[str, Any, str | None]]:
    """(path, child, problem with the key) for each member of a container."""
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str):
                yield f"{path}.{key!r}", child, "object key is not text"
            elif not _valid_text(key):
                yield f"{path}.{key!r}", child, "object key with a lone surrogate (not valid Unicode)"
            else:
                yield (f"{path}.{key}" if path else key), child, None
    else:
        for index, child in enumerate(value):
            yield f"{path}[{index}]", child, None


def problems(value: Any, max_depth: int = MAX_DEPTH, root: str = "") -> list[tuple[str, str]]:
    """What keeps ``value`` from being stored, as ``(json path, reason)`` pairs (at most ``MAX_PROBLEMS``).

    Iterative, so a hostile depth costs no recursion; a container nested deeper than ``max_depth`` is
    reported once and not looked into.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int]] = [(root, value, 0)]
    while stack and len(found) < MAX_PROBLEMS:
        path, item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                found.append((path or "body", f"nested deeper than {max_depth} levels"))
                continue
            members = list(_children(item, path))
            for child_path, child, key_problem in reversed(members):
                if key_problem:
                    found.append((child_path, key_problem))
                stack.append((child_path, child, depth + 1))
            continue
        reason = _scalar_problem(item)
        if reason:
            found.append((path or "body", reason))
    return found[:MAX_PROBLEMS]


def encoded_if_clean(value: Any) -> bytes | None:
    """``json.dumps(value, ensure_ascii=False)`` as UTF-8 when ``problems(value)`` would find nothing, else None
    (then ``problems()`` names what is wrong). The hot path of an event batch: one encode at C speed proves the
    numbers finite and the text valid Unicode; a walk of the containers alone checks text keys, the depth and
    64-bit integers."""
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError):  # NaN or Infinity, a lone surrogate, a non-JSON type, depth
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return None
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return None
            members: Any = item.values()
        elif isinstance(item, list | tuple):
            members = item
        else:
            continue
        if depth >= MAX_DEPTH:
            return None
        for child in members:
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
            elif isinstance(child, int) and not isinstance(child, bool) and not INT64_MIN <= child <= INT64_MAX:
                return None
    return encoded


def describe(found: list[tuple[str, str]]) -> str:
    """``"payload.a: reason; ..."`` for an error message."""
    return "; ".join(f"{path}: {reason}" for path, reason in found)


def readable(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of a stored value that any JSON encoder can write: values breaking the rules become text saying so.

    For rows stored before ingest checked them (a 260-level payload, NaN): reads must never fail on them.
    """
    if not problems(value, max_depth):
        return value
    return _repair(value, max_depth)


def _repair(value: Any, depth_left: int) -> Any:
    # recursion is bounded: the stored text was parsed by json.loads, itself limited by the recursion limit
    if isinstance(value, dict | list | tuple):
        if depth_left <= 0:
            return f"<removed: nested deeper than {MAX_DEPTH} levels>"
        if isinstance(value, dict):
            return {_repair_text(str(k)): _repair(v, depth_left - 1) for k, v in value.items()}
        return [_repair(v, depth_left - 1) for v in value]
    if isinstance(value, str):
        return _repair_text(value)
    if _scalar_problem(value):
        return repr(value) if isinstance(value, float | int) else None
    return value


def _repair_text(text: str) -> str:
    return text if _valid_text(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def load_stored(text: str | None, default: Any = None) -> Any:
    """A JSON column as a readable value; text that does not parse becomes a marker, never an exception."""
    if text is None:
        return default
    try:
        return readable(json.loads(text))
    except (ValueError, RecursionError):
        return {"unreadable": "the stored JSON could not be parsed"}


def parse_json(raw: bytes) -> Any:
    """Parse a request body; every failure (bad UTF-8, nesting past the recursion limit, a 5,000-digit integer)
    is a ``json.JSONDecodeError``. NaN and Infinity parse, so that ``problems()`` can name where they are."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to parse", "", 0) from None
    except ValueError as exc:  # UnicodeDecodeError, the int digit limit
        raise json.JSONDecodeError(f"not valid JSON text: {exc}", "", 0) from None


class StoredBody(BaseModel):
    """Base of every request body the central stores: its fields, as sent, pass ``problems()`` first.

    ``isolated`` names list fields whose items are checked one by one later (an event batch's events, so one
    poisoned event is one rejection, not a refused batch).
    """

    # JSON types as JSON has them: no "1" for 1, no false for 0 (integers: ``bodies._json_integer``)
    model_config = ConfigDict(strict=True)
    isolated: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and not (info.context or {}).get(CHECKED):
            # keys that are not fields are never stored (ignored, or refused by extra="forbid")
            checked = {k: v for k, v in data.items() if k in cls.model_fields and k not in cls.isolated}
            found = problems(checked)
            if found:
                raise ValueError(describe(found))
        return data
