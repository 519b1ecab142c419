"""Which notifications an alert needs now: a pure function of the alert view, when it turned urgent, the
channels and the time. The worker stores each planned delivery once (by its key) and sends it until delivered.

Reasons: ``opened`` (the roles told at once), ``escalated`` (the held-back roles, e.g. the social worker, once
nobody acknowledged in time), ``urgent`` (the roles told at once are told again when a warning turns urgent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.notify.config import ChannelSection

URGENT_AGAIN_AFTER_S = 1.0  # an alert urgent from its first event is not "turned urgent" a second time


@dataclass(frozen=True)
class Planned:
    key: str
    alert: int
    role: str
    channel: str
    reason: str
    due_at: float


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
    if urgent_at is not None and urgent_at - float(alert["opened_at"]) >= URGENT_AGAIN_AFTER_S:
        due += [(role, "urgent", urgent_at) for role, reason, _ in list(due) if reason == "opened"]
    out = []
    for role, reason, at in due:
        if at > now:
            continue
        channels: Sequence[ChannelSection] = channels_for(role, alert.get("site"))
        for channel in channels:
            key = delivery_key(int(alert["id"]), role, channel.id, reason)
            out.append(Planned(key, int(alert["id"]), role, channel.id, reason, at))
    return out
