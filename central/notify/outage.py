"""The duty desk told that the central cannot store (a full disk, the database away), straight on the desk's
channels: every other message goes through the delivery table, which lives in the database that is failing.

Once when the storage's health turns failing, once when an upload is stored again (to the channels that were told
it failed); and before that, while the room left beside a SQLite file is low, once a day. A send that fails is
tried again a minute later. Kept in memory only: a central restarted while failing tells again. Only channels that
need no contact carry it (robots, webhooks, e-mail with its own `to`): the desk's numbers and addresses are the
nodes' contacts, in the database, so SMS is not used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from central.kinds import STORAGE_TROUBLE, clock_text
from central.notify.config import ChannelSection
from central.notify.message import Message
from central.notify.retry import Outcome
from central.storage.errors import StorageError

log = logging.getLogger("central.notify")
ROLE = "operator"  # the duty desk
KIND = "central_storage"
RETRY_S = 60.0
LOW_AGAIN_S = 86_400.0  # while the room stays low, the desk hears it again each day
Send = Callable[[ChannelSection, Message], Outcome]
Said = Callable[[], dict]  # the storage's health as /health says it (StorageHealth.to_json)
OPEN_AGAIN_S = 10.0  # a central that could not open its database on a full disk tries again this often


@dataclass
class Pending:
    channel: ChannelSection
    message: Message
    due: float = 0.0


def failing_message(since: float, reason: str) -> Message:
    lines = (
        f"自 {clock_text(since)} 起，中心无法保存各设备发来的数据（{STORAGE_TROUBLE.get(reason, STORAGE_TROUBLE['other'])}）。",
        "各设备会暂存新的报警并不断重传；恢复之前，新的报警不会出现在值班台，也不会通知任何人。",
        "请立即联系系统管理员；有人求助请直接打电话。",
    )
    return _message(f"{KIND}:{since:.0f}:failing", "storage_failing", "urgent", "【中心故障】中心无法保存数据", lines)


def back_message(since: float, back_at: float) -> Message:
    lines = (
        f"{clock_text(back_at)} 起恢复，中断约 {max(1, round((back_at - since) / 60))} 分钟。",
        "各设备暂存的报警正在补传，稍后会出现在值班台并照常通知。",
    )
    return _message(f"{KIND}:{since:.0f}:back", "storage_back", "info", "【中心已恢复】中心又能保存数据了", lines)


def low_message(free_bytes: int, size_bytes: int, at: float) -> Message:
    lines = (
        f"中心数据库所在的磁盘只剩 {gigabytes(free_bytes)}（共 {gigabytes(size_bytes)}）。",
        "磁盘满了以后，新的报警将无法保存，也不会通知任何人。",
        "请通知系统管理员清理或扩容。",
    )
    return _message(f"{KIND}:{at:.0f}:low", "storage_low", "warning", "【中心磁盘空间不足】", lines)


def gigabytes(size: int) -> str:
    return f"{size / 1024**3:.1f} GB" if size >= 1024**3 / 10 else f"{size / 1024**2:.0f} MB"


def _message(key: str, reason: str, severity: str, title: str, lines: tuple[str, ...]) -> Message:
    return Message(key, 0, ROLE, reason, severity, KIND, "", title, lines)


class OutageNotice:
    """``check()`` on every notifier loop: plans and sends the two messages of each failing spell."""

    def __init__(self, said: Said, channels: tuple[ChannelSection, ...], send: Send) -> None:
        self.said = said
        self.channels = [
            c for c in channels if ROLE in c.roles and (c.type in ("webhook", "wecom", "dingtalk") or c.to)
        ]
        self.send = send
        self.since: float | None = None  # the failing spell being told of
        self.told: list[ChannelSection] = []
        self.pending: list[Pending] = []
        self.low_said: float | None = None  # when the desk was last told the room is low (monotonic)

    def check(self) -> None:
        said = self.said()
        if said["state"] == "failing" and self.since is None:
            self.since, self.told = said["since"], []
            self.pending += [Pending(c, failing_message(said["since"], said["reason"])) for c in self.channels]
        elif said["state"] == "ok" and self.since is not None:
            back = back_message(self.since, said["last_stored"] or time.time())
            moot = [p for p in self.pending if p.message.reason == "storage_failing"]  # not yet out: moot now
            self.pending = [p for p in self.pending if p not in moot] + [Pending(c, back) for c in self.told]
            self.since = None
        disk, now = said.get("disk") or {}, time.monotonic()
        if not disk.get("low"):
            self.low_said = None
        elif said["state"] == "ok" and (self.low_said is None or now - self.low_said >= LOW_AGAIN_S):
            self.low_said = now
            low = low_message(disk["free_bytes"], disk["size_bytes"], time.time())
            self.pending += [Pending(c, low) for c in self.channels]
        self._send_due()

    def _send_due(self) -> None:
        now = time.monotonic()
        for item in [p for p in self.pending if p.due <= now]:
            outcome = self.send(item.channel, item.message)
            if outcome.ok:
                self.pending.remove(item)
                if item.message.reason == "storage_failing":
                    self.told.append(item.channel)
                log.warning("told the desk on %s: %s", item.channel.id, item.message.title)
            elif outcome.permanent:  # a message this channel can never carry: not tried again
                self.pending.remove(item)
                log.error("cannot tell the desk on %s: %s", item.channel.id, outcome.detail)
            else:
                item.due = now + RETRY_S
                log.error("could not tell the desk on %s (again in 60 s): %s", item.channel.id, outcome.detail)


def wait_for_room(
    open_db: Callable[[], None], error: StorageError, channels: tuple[ChannelSection, ...], send: Send
) -> None:
    """A central that could not open its database on a full disk (at boot, say) tells the desk so, tries again every
    OPEN_AGAIN_S until it opens, and tells those told that it is back (one try each: serving the nodes' alarms does
    not wait on a channel that is down) before it serves. (SQLite says only "disk I/O error" there: the caller saw
    the disk full.)"""
    said: dict = {"state": "failing", "since": time.time(), "reason": "disk_full", "error": str(error)}
    notice = OutageNotice(lambda: said, channels, send)
    while True:
        notice.check()
        time.sleep(OPEN_AGAIN_S)
        try:
            open_db()
            break
        except StorageError as exc:
            said["error"] = str(exc)
    said.clear()
    said.update(state="ok", last_stored=time.time())
    notice.check()
