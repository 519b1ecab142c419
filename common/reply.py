"""What a reply to an upload means, by status code and by the typed, versioned refusal body only our central
sends (the error contract in docs/api.md); a reply that is neither an acknowledgement nor ours means "try again
later", whatever its text says. An event becomes a dead letter only when our central says that event is invalid.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from common.http import HttpReply

ERROR_SCHEMA = "changbai-error/1"
BACKOFF_BASE_S = 1.0
# per-event codes that mean "this event itself will never be accepted": the node keeps it as a dead letter
DEAD_LETTER_CODES = frozenset({"invalid_event", "foreign_event"})

Action = Literal["ack", "auth", "split", "later"]


@dataclass(frozen=True)
class CentralError:
    """A refusal in our central's own typed body."""

    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejection:
    """One event the central did not accept, with its code (None when the central gave none) and reason."""

    event_id: str
    code: str | None
    reason: str

    @property
    def final(self) -> bool:
        """True when the central says the event itself is invalid (dead-letter it); else keep and retry."""
        return self.code in DEAD_LETTER_CODES


@dataclass(frozen=True)
class Verdict:
    """``action``: ack (apply ``accepted``/``rejected``), auth (pause, keep everything), split (the batch is too
    large: halve it), later (keep everything, back off, honour ``retry_after``). ``error`` is for logs."""

    action: Action
    error: str = ""
    retry_after: float | None = None
    accepted: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = field(default_factory=tuple)


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - wall_now)


def backoff_delay(
    failures: int, cap: float, retry_after_cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Full jitter under an exponential ceiling (1 s x 2^(failures-1), at most ``cap``); Retry-After is honoured
    but at most ``retry_after_cap``, so a wrong header cannot silence alarms for a day."""
    ceiling = min(cap, BACKOFF_BASE_S * 2 ** min(failures - 1, 30))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_cap))
    return delay


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def our_error(reply: HttpReply) -> CentralError | None:
    """The refusal body our central sends (JSON with ``schema`` = changbai-error/1), else None: a proxy's page,
    a captive portal or another service's error is never taken for our central's word."""
    if not reply.headers.get("Content-Type", "").lower().startswith("application/json"):
        return None
    data = _json(reply.body)
    if not isinstance(data, Mapping) or data.get("schema") != ERROR_SCHEMA or not isinstance(data.get("error"), str):
        return None
    fields = data.get("fields")
    return CentralError(
        code=data["error"],
        message=str(data.get("message", ""))[:300],
        fields=tuple(str(f) for f in fields) if isinstance(fields, list) else (),
    )


def describe(reply: HttpReply) -> str:
    """One line for logs and the heartbeat: the status, and our central's code and message if it is ours."""
    error = our_error(reply)
    if error is None:
        return f"HTTP {reply.status} (not our central's answer)" if reply.status >= 300 else f"HTTP {reply.status}"
    return f"HTTP {reply.status} {error.code}: {error.message}"


def _rejections(items: Any) -> tuple[Rejection, ...]:
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            code = item.get("code")
            out.append(
                Rejection(item["id"], code if isinstance(code, str) else None, str(item.get("reason", ""))[:500])
            )
    return tuple(out)


def classify_upload(reply: HttpReply, wall_now: float) -> Verdict:
    """What to do with the events of a POST /events after this reply (the node's half of the error contract)."""
    status = reply.status
    if 200 <= status < 300:
        data = _json(reply.body)
        if not isinstance(data, Mapping) or not isinstance(data.get("accepted"), list):
            return Verdict("later", f"InvalidReply: HTTP {status} without an 'accepted' list")
        accepted = tuple(i for i in data["accepted"] if isinstance(i, str))
        return Verdict("ack", accepted=accepted, rejected=_rejections(data.get("rejected")))
    if status == 413:
        return Verdict("split", describe(reply))
    if status in (401, 403) and our_error(reply) is not None:
        return Verdict("auth", describe(reply))
    return Verdict("later", describe(reply), parse_retry_after(reply.headers.get("Retry-After"), wall_now))


def is_auth_refusal(reply: HttpReply) -> bool:
    """Our central refused the token (401/403 in its own body): the same pause as for uploads."""
    return reply.status in (401, 403) and our_error(reply) is not None
