"""Which notifications an alert needs now: a pure function of the alert view, when it turned urgent, the
channels and the time. The worker stores each planned delivery once (by its key) and sends it until delivered.

Reasons: ``opened`` (the roles told at once), ``escalated`` (the held-back roles, e.g. the social worker, once
nobody acknowledged in time), ``urgent`` (the roles told at once are told again when a warning turns urgent),
``cleared`` (the all-clear: once the node reports the condition over, every role told of it before is told so),
``resolved`` (a person closed an alert the node had not reported over: the roles told of it are told so, with the
words written for them, never the desk's note), ``acknowledged`` (a person took it in: the others told of it are
told who, and that it still stands).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.notify.config import ChannelSection
from central.notify.links import LINK_VIA
from common.catalogue import SEVERITY_RANK

URGENT_AGAIN_AFTER_S = 1.0  # an alert urgent from its first event is not "turned urgent" a second time
ALL_CLEAR_WITHIN_S = 3600.0  # the news that it is over, later than this after it, is news to nobody (nor on an upgrade)
# a clear that does not say it is over sends no all-clear: the kiosk closes a help request on a timer, not when help
# came (the desk's resolution says it); a silence cleared because a newer one took over is told as that one
NOT_OVER_KINDS = frozenset({"help_requested"})
NOT_OVER_REASONS = frozenset({"superseded"})
OVER_REASONS = frozenset({"cleared", "resolved"})  # the news that it is over: asks nothing, and goes after resolution
NEWS_REASONS = OVER_REASONS | {"acknowledged"}  # news that asks nothing: no link, sent after every alarm
# the central's alert for a node gone silent: many fall silent together when a compound's network or power goes, and
# are told as one message (``group_silent_min``); news of them (heard again, taken in, closed) waits for the next
# whole minute, so that the nodes heard again, or taken in at the console, together are told together too
GROUPED_KIND = "node_silent"
GATHER_S = 60.0


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


def taken_in_news(alert: Mapping[str, Any]) -> float | None:
    """When a person acknowledged ``alert``, while that is still the news: not once it is over (the all-clear or
    the resolution says more)."""
    at = alert.get("acknowledged_at")
    if alert.get("state") != "acknowledged" or at is None or over_news(alert) is not None:
        return None
    return float(at)


def _answered_alone(alert: Mapping[str, Any], role: str) -> bool:
    """Whether ``role`` itself answered by its link and is one person: who answered needs no news of it."""
    contacts = (alert.get("contacts") or {}).get(role)
    alone = not isinstance(contacts, list) or len(contacts) <= 1
    return alert.get("acknowledged_via") == LINK_VIA + role and alone


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
    urgency: int = 0  # which goes first when a channel's rate limit holds messages back: urgent 2 ... news -1


def urgency(severity: str, reason: str) -> int:
    """An alert's severity rank (info 0, warning 1, urgent 2); news that asks nothing after everything else (-1)."""
    return -1 if reason in NEWS_REASONS else SEVERITY_RANK.get(severity, 0)


def delivery_key(alert: int, role: str, channel: str, reason: str) -> str:
    """The delivery's identity: one alert, role, channel and reason is sent (and recorded) once."""
    return f"a{alert}:{role}:{channel}:{reason}"


def planned(
    alert: Mapping[str, Any],
    urgent_at: float | None,
    channels_for: Any,
    now: float,
    *,
    tell_acknowledged: bool = True,
) -> list[Planned]:
    """The deliveries due by ``now`` for an alert view (``notified``/``escalation`` from ``central.routing``).

    ``channels_for(role, site) -> [ChannelSection]`` picks the channels per role and site; ``tell_acknowledged``:
    a person's acknowledgement is news to the others told of it (``[notify] tell_acknowledged``).
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
    taken = taken_in_news(alert) if tell_acknowledged else None
    if taken is not None and now - taken <= ALL_CLEAR_WITHIN_S:  # the roles really told before it was taken in
        heard = alert.get("told") or {}  # (an alarm delivered later says who took it in: it needs no news of it)
        due += [(role, "acknowledged", taken) for role, seen in heard.items()
                if float(seen["at"]) <= taken and not _answered_alone(alert, role)]  # fmt: skip
    out = []
    gather = alert.get("kind") == GROUPED_KIND
    for role, reason, due_at in due:
        at = math.ceil(due_at / GATHER_S) * GATHER_S if gather and reason in NEWS_REASONS else due_at
        if at > now:
            continue
        rank = urgency(str(alert.get("severity")), reason)
        channels: Sequence[ChannelSection] = channels_for(role, alert.get("site"))
        for channel in channels:
            key = delivery_key(int(alert["id"]), role, channel.id, reason)
            out.append(Planned(key, int(alert["id"]), role, channel.id, reason, at, rank))
    return out
