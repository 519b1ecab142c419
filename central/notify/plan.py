"""Which notifications an alert needs now: a pure function of the alert view, when it turned urgent, the
channels and the time. The worker stores each planned delivery once (by its key) and sends it until delivered.

Reasons: ``opened`` (the roles told at once), ``escalated`` (the held-back roles, e.g. the social worker, once
nobody acknowledged in time), ``urgent`` (the roles told at once are told again when a warning turns urgent),
``cleared`` (the all-clear: once the node reports the condition over, every role told of it before is told so),
``resolved`` (a person closed an alert the node had not reported over: the roles told of it are told so, with the
words written for them, never the desk's note).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.notify.config import ChannelSection
from common.catalogue import SEVERITY_RANK

URGENT_AGAIN_AFTER_S = 1.0  # an alert urgent from its first event is not "turned urgent" a second time
ALL_CLEAR_WITHIN_S = 3600.0  # the news that it is over, later than this after it, is news to nobody (nor on an upgrade)
# a clear that does not say it is over sends no all-clear: the kiosk closes a help request on a timer, not when help
# came (the desk's resolution says it); a silence cleared because a newer one took over is told as that one
NOT_OVER_KINDS = frozenset({"help_requested"})
NOT_OVER_REASONS = frozenset({"superseded"})
OVER_REASONS = frozenset({"cleared", "resolved"})  # the news that it is over: asks nothing, and goes after resolution


def over_news(alert: Mapping[str, Any]) -> tuple[str, float] | None:
    """How the roles told of ``alert`` learn it is over, and from when: ``cleared`` when the node reported the
    condition over, ``resolved`` when a person closed it first; None while neither, or for a silence a newer one
    took over."""
    payload = alert.get("payload") or {}
    if alert.get("cleared_on_site") and payload.get("reason") in NOT_OVER_REASONS:
        return None
    news = []
    if alert.get("cleared_on_site") and alert.get("cleared_at") is not None and alert.get("kind") not in NOT_OVER_KINDS:
        news.append(("cleared", float(alert["cleared_at"])))
    if alert.get("state") == "resolved" and alert.get("resolved_at") is not None:
        news.append(("resolved", float(alert["resolved_at"])))
    return min(news, key=lambda n: n[1], default=None)  # the first news: one message says it is over


def resolution_reaches(alert: Mapping[str, Any], now: float) -> list[str]:
    """The roles a person closing ``alert`` now would tell, with the words they write for them: those told of it,
    unless the node's all-clear already said it is over (or a newer silence took over)."""
    if alert.get("state") == "resolved":
        return []
    news = over_news({**alert, "state": "resolved", "resolved_at": now})
    return list(alert.get("told") or {}) if news is not None and news[0] == "resolved" else []


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
    """An alert's severity rank (info 0, warning 1, urgent 2); the news that it is over after everything else (-1)."""
    return -1 if reason in OVER_REASONS else SEVERITY_RANK.get(severity, 0)


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
    news = over_news(alert)
    if news is not None and now - news[1] <= ALL_CLEAR_WITHIN_S:  # the roles due before it was over, once told of it
        heard = alert.get("told") or {}  # (the news never overtakes the alarm it ends, say on a retry)
        reason, over = news
        due += [(role, reason, over) for role in dict.fromkeys(r for r, _, at in told if at <= over and r in heard)]
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
