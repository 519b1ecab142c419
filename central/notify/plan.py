"""Which notifications an alert needs now: a pure function of the alert view, when it turned urgent, the
channels and the time. The worker stores each planned delivery once (by its key) and sends it until delivered.

Reasons: ``opened`` (the roles told at once), ``escalated`` (the held-back roles, e.g. the social worker, once
nobody acknowledged in time), ``urgent`` (the roles told at once are told again when a warning turns urgent),
``cleared`` (the all-clear: once the node reports the condition over, every role told of it before is told so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.notify.config import ChannelSection
from common.catalogue import SEVERITY_RANK

URGENT_AGAIN_AFTER_S = 1.0  # an alert urgent from its first event is not "turned urgent" a second time
ALL_CLEAR_WITHIN_S = 3600.0  # an all-clear later than this after the clear is news to nobody (nor sent on an upgrade)
# a clear that does not say it is over sends no all-clear: the kiosk closes a help request on a timer, not when help
# came; a silence cleared because a newer one took over is told as that one
NOT_OVER_KINDS = frozenset({"help_requested"})
NOT_OVER_REASONS = frozenset({"superseded"})


def all_clear_at(alert: Mapping[str, Any]) -> float | None:
    """When the node reported the alert's condition over, if that clear tells people it is over; else None."""
    cleared_at = alert.get("cleared_at")
    if not alert.get("cleared_on_site") or cleared_at is None or alert.get("kind") in NOT_OVER_KINDS:
        return None
    payload = alert.get("payload") or {}
    return None if payload.get("reason") in NOT_OVER_REASONS else float(cleared_at)


@dataclass(frozen=True)
class Planned:
    key: str
    alert: int
    role: str
    channel: str
    reason: str
    due_at: float
    urgency: int = 0  # which goes first when a channel's rate limit holds messages back: urgent 2 ... all-clear -1


def urgency(severity: str, reason: str) -> int:
    """An alert's severity rank (info 0, warning 1, urgent 2); an all-clear after everything else (-1)."""
    return -1 if reason == "cleared" else SEVERITY_RANK.get(severity, 0)


def delivery_key(alert: int, role: str, channel: str, reason: str) -> str:
    """The delivery's identity: one alert, role, channel and reason is sent (and recorded) once."""
    return f"a{alert}:{role}:{channel}:{reason}"


def planned(
    alert: Mapping[str, Any],
    urgent_at: float | None,
    channels_for: Any,
    now: float,
) -> list[Planned]:
    """The deliveries due by ``now`` for an alert view (``notified``/``escalation`` from ``central.routing``).

    ``channels_for(role, site) -> [ChannelSection]`` picks the channels per role and site.
    """
    due: list[tuple[str, str, float]] = []
    escalation = alert.get("escalation") or {}
    later = set(escalation.get("roles") or []) if escalation.get("state") == "escalated" else set()
    for entry in alert.get("notified") or []:
        role, at = entry["role"], float(entry["at"])
        due.append((role, "escalated" if role in later else "opened", at))
    told = list(due)
    if urgent_at is not None and urgent_at - float(alert["opened_at"]) >= URGENT_AGAIN_AFTER_S:
        due += [(role, "urgent", urgent_at) for role, reason, _ in told if reason == "opened"]
    over = all_clear_at(alert)
    if over is not None and now - over <= ALL_CLEAR_WITHIN_S:  # the roles due before it was over, once told of it
        heard = alert.get("told") or {}  # (an all-clear never overtakes the alarm it clears, say on a retry)
        due += [(role, "cleared", over) for role in dict.fromkeys(r for r, _, at in told if at <= over and r in heard)]
    out = []
    for role, reason, at in due:
        if at > now:
            continue
        rank = urgency(str(alert.get("severity")), reason)
        channels: Sequence[ChannelSection] = channels_for(role, alert.get("site"))
        for channel in channels:
            key = delivery_key(int(alert["id"]), role, channel.id, reason)
            out.append(Planned(key, int(alert["id"]), role, channel.id, reason, at, rank))
    return out
