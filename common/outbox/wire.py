"""An event's stored and sent JSON text, always valid JSON that encodes to UTF-8: a NaN, an infinity or a lone
surrogate from a sensor must not make an alert unstorable or a whole batch unreadable to the central."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from common.events import Event

log = logging.getLogger("common.outbox")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    # a payload value json cannot encode must not cost an alert: store its text and say so in the log
    log.warning("outbox: payload value of type %s stored as text", type(value).__name__)
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable, allow_nan=False)


def event_json(event: Event) -> str:
    """``Event.to_wire()`` as compact JSON that is always valid UTF-8."""
    wire = event.to_wire()
    try:
        text = _ENCODER.encode(wire)
    except ValueError:  # NaN or infinity: JSON has no such numbers; null says "no value"
        log.warning("outbox: event %s (%s) carried a NaN or infinite number, stored as null", event.id, event.kind)
        text = _ENCODER.encode(_finite(wire))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, SQLite and the central would refuse the text
        log.warning("outbox: event %s (%s) carried text that is not UTF-8; replaced", event.id, event.kind)
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
