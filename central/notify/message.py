"""What a notification says: one ``Message`` per (alert, role, reason), in Chinese, from the alert as the API shows it.

The same words as the duty console (``central.kinds``): the kind, how urgent, where, since when (the node's own
time, and when the central received it if that was later), why (the alert's reasoning), whom it concerns, and
the acknowledgement link. Channels only format it (``central.notify.channels``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from central.kinds import DELIVERY_REASONS, NODE_ROLES, SEVERITIES, TARGET_MINUTES, clock_text, kind_zh, role_zh
from central.notify.links import LINK_VIA
from central.reasons import SILENT_STAKES, closed, reasons

NEWS_TITLES = {"cleared": "已解除", "resolved": "已处理", "acknowledged": "已有人确认"}
LATE_AFTER_S = 120  # the node's time is shown beside the central's when the alert arrived this much later


@dataclass(frozen=True)
class Message:
    """One notification, ready for any channel."""

    key: str  # the delivery's idempotency key: the same message always has the same key
    alert: int
    role: str
    reason: str
    severity: str
    kind: str
    site: str
    title: str
    lines: tuple[str, ...]
    link: str = ""
    contacts: tuple[Mapping[str, str], ...] = field(default_factory=tuple)
    alerts: tuple[int, ...] = ()  # a message for many alerts (``compose_group``): all of them, ``alert`` the first

    @property
    def mobiles(self) -> list[str]:
        """The contacts' phone numbers as digits (what robots @-mention and SMS gateways send to)."""
        out = []
        for c in self.contacts:
            digits = "".join(ch for ch in str(c.get("phone", "")) if ch.isdigit())
            if len(digits) >= 7 and digits not in out:
                out.append(digits)
        return out

    @property
    def emails(self) -> list[str]:
        return [str(c["email"]) for c in self.contacts if c.get("email")]

    def text(self, max_bytes: int | None = None) -> str:
        """Title, the reasons and the link, one per line (SMS, robots, e-mail body). With ``max_bytes`` (UTF-8)
        the reasons are cut, never the link: a cut link would not open."""
        link = f"\n确认收到（我已知晓 / 我去看看）：{self.link}" if self.link else ""
        body = "\n".join([self.title, *self.lines])
        if max_bytes is not None:
            body = clip_utf8(body, max(0, max_bytes - len(link.encode())))
        return body + link

    def to_json(self, sent_at: float) -> dict[str, Any]:
        """The generic webhook's body (schema ``changbai-notification/1``, docs/central.md)."""
        return {
            "schema": "changbai-notification/1",
            "delivery_id": self.key,
            "alert_id": self.alert,
            "role": self.role,
            "reason": self.reason,
            "severity": self.severity,
            "kind": self.kind,
            "kind_zh": kind_zh(self.kind),
            "site": self.site,
            "title": self.title,
            "lines": list(self.lines),
            "text": self.text(),
            "ack_url": self.link or None,
            "recipients": [dict(c) for c in self.contacts],
            "sent_at": sent_at,
            **({"alert_ids": list(self.alerts)} if self.alerts else {}),
        }


def clip_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes on a character boundary (with … when cut)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: max(0, limit - 3)].decode("utf-8", errors="ignore") + "…"


def _since(alert: Mapping[str, Any]) -> str:
    raised, opened = alert.get("raised_at"), alert.get("opened_at")
    text = f"发生于 {clock_text(raised)}"
    if isinstance(raised, int | float) and isinstance(opened, int | float) and opened - raised > LATE_AFTER_S:
        text += f"（中心 {clock_text(opened)} 才收到：节点当时离线）"
    return text


def compose(
    alert: Mapping[str, Any], role: str, reason: str, contacts: Sequence[Mapping[str, str]], key: str, link: str = ""
) -> Message:
    """The message telling ``role`` about ``alert`` (an alert view) for ``reason`` (opened, urgent, escalated,
    cleared, resolved, acknowledged)."""
    severity = str(alert.get("severity", "info"))
    raw = alert.get("payload")
    payload: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    flat = payload.get("resident")
    where = " ".join(str(p) for p in (alert.get("location"), flat and f"住户 {flat}") if p)
    sev = NEWS_TITLES.get(reason) or SEVERITIES.get(severity, (severity, ""))[0]
    title = f"【{sev}】{kind_zh(str(alert.get('kind', '')))}" + (f" · {where}" if where else "")
    lines = [
        f"{DELIVERY_REASONS.get(reason, (reason, ''))[0]} · 通知{role_zh(role)}",
        _since(alert),
        *_body(alert, reason, payload),
    ]
    return Message(
        key=key,
        alert=int(alert["id"]),
        role=role,
        reason=reason,
        severity=severity,
        kind=str(alert.get("kind", "")),
        site=str(alert.get("site") or ""),
        title=title,
        lines=tuple(lines),
        link=link,
        contacts=tuple(dict(c) for c in contacts if isinstance(c, Mapping)),
    )


def compose_group(
    alerts: Sequence[Mapping[str, Any]],
    role: str,
    reason: str,
    contacts: Sequence[Mapping[str, str]],
    key: str,
    site_name: str = "",
) -> Message:
    """One message telling ``role`` about many nodes of one site gone silent (or heard again) together (alert views
    of ``node_silent``, told at once): how many of which kind, since when, what stops meanwhile, where (the site by
    ``site_name``, its configured name). No link: each node's alert is taken in at the console."""
    first, count = alerts[0], len(alerts)
    payloads: list[Mapping[str, Any]] = [p if isinstance(p := a.get("payload"), Mapping) else {} for a in alerts]
    kinds = Counter(str(p.get("role") or "") for p in payloads)
    site = str(first.get("site") or "")
    sev = NEWS_TITLES.get(reason) or SEVERITIES.get(str(first.get("severity")), ("", ""))[0]
    named = site_name or site
    title = f"【{sev}】{kind_zh(str(first.get('kind', '')))} · {count} 台设备" + (f" · {named}" if named else "")
    which = "、".join(f"{NODE_ROLES.get(k, '设备')} {n} 台" for k, n in kinds.most_common())
    lines = [f"{DELIVERY_REASONS.get(reason, (reason, ''))[0]} · 通知{role_zh(role)}"]
    if reason == "cleared":
        heard = max((t for p in payloads if isinstance(t := p.get("heard_at"), int | float)), default=None)
        lines += [f"{clock_text(heard)} 前又收到这 {count} 台设备的消息：已恢复联系（{which}）"]
    elif reason in ("acknowledged", "resolved"):  # what a person did with them all at the console
        did = "已确认收到" if reason == "acknowledged" else "处理并关闭了"
        lines += [
            f"{clock_text(first.get(f'{reason}_at'))} {first.get(f'{reason}_by') or '值班'} {did}这 {count} 台设备的失联告警（{which}）"
        ]
        lines += ["告警尚未解除，请照原安排处理"] if reason == "acknowledged" else []
    else:
        seen = min((t for p in payloads if isinstance(t := p.get("last_seen_at"), int | float)), default=None)
        lines += [
            f"{count} 台设备同时没有任何消息（{which}；最早的最后一次收到：{clock_text(seen)}）",
            "这么多台同时失联，多半是这一片的网络或供电中断：请先检查小区的网络和电源",
            *(
                SILENT_STAKES[k].replace("这台", "这些").replace("这个节点", "这些节点")
                for k in kinds
                if k in SILENT_STAKES
            ),
        ]
    places = sorted(str(a.get("location") or a.get("node_id") or "?") for a in alerts)
    lines.append("涉及：" + "、".join(places[:8]) + (f" 等 {count} 处" if count > 8 else ""))
    return Message(
        key=key,
        alert=int(first["id"]),
        role=role,
        reason=reason,
        severity=str(first.get("severity", "info")),
        kind=str(first.get("kind", "")),
        site=site,
        title=title,
        lines=tuple(lines),
        contacts=tuple(dict(c) for c in contacts if isinstance(c, Mapping)),
        alerts=tuple(int(a["id"]) for a in alerts),
    )


def taken_in(alert: Mapping[str, Any]) -> list[str]:
    """A person's acknowledgement in words for the others told of the alert: who took it in and when, their answer
    when they gave it by link (the desk's own note never), and that the alert still stands, with its arrival time
    limit where it has one: nobody may read "the desk has it" as "no need to come"."""
    lines = [f"{clock_text(alert.get('acknowledged_at'))} {alert.get('acknowledged_by') or '值班'} 已确认收到"]
    if str(alert.get("acknowledged_via") or "").startswith(LINK_VIA) and alert.get("ack_note"):
        lines.append(f"回复：{alert['ack_note']}")
    lines.append("告警尚未解除，请照原安排处理")
    minutes = TARGET_MINUTES.get(str(alert.get("kind")))
    if minutes:
        lines.append(f"到场时限不变：报警后 {minutes} 分钟内")
    return lines


def _body(alert: Mapping[str, Any], reason: str, payload: Mapping[str, Any]) -> list[str]:
    """What the message says after whom it tells and since when: why (the alert's reasoning); for a person's
    resolution only who closed it, when, and the words they wrote for the people told (the alarm's reasons asked to
    act)."""
    if reason == "resolved":
        return closed(alert)
    if reason == "acknowledged":
        return taken_in(alert)
    lines = [f"解除于 {clock_text(alert.get('cleared_at'))}（节点报告）"] if reason == "cleared" else []
    lines += reasons(str(alert.get("kind", "")), payload, bool(alert.get("cleared_on_site")))
    if alert.get("state") == "acknowledged" and alert.get("acknowledged_by"):
        lines.append(f"{alert['acknowledged_by']} 已确认在处理")
    return lines
