"""Alert lifecycle shared by every role: one incident (kind + key) = one alert with a stable id.

A detector's raised/updated/cleared detections of one incident become Events carrying the same ``alert_id``;
the Event is in the outbox before ``record`` returns, together with the book of open alerts (one SQLite
transaction), so an alert and its bookkeeping never disagree and open alerts survive a restart. Open alerts
are re-sent as ``updated`` every ``renotify_s`` until cleared: EN 81-28 wants an alarm repeated until it is
acknowledged, and in v1 the central's acknowledgment does not reach the node.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import catalogue
from common.catalogue import SEVERITIES, Priority, Severity, State
from common.clock import Clock
from common.events import Detection, Event, make_event
from common.files import write_atomic
from common.outbox import Outbox

log = logging.getLogger(__name__)

STATE_KEY = "alerts.open"
DEFAULT_RENOTIFY_S = 300.0


@dataclass
class OpenAlert:
    """An incident that was raised and not yet cleared."""

    alert_id: str
    kind: str
    key: str
    severity: Severity
    raised_wall: float
    recipients: tuple[str, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)
    updates: int = 0
    # monotonic time of the last event sent for it; not persisted (monotonic time restarts with the node)
    last_sent: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("last_sent")
        data["recipients"] = list(self.recipients)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OpenAlert:
        return cls(
            alert_id=str(data["alert_id"]),
            kind=str(data["kind"]),
            key=str(data.get("key", "")),
            severity=_severity(data.get("severity")),
            raised_wall=float(data.get("raised_wall", 0.0)),
            recipients=tuple(data.get("recipients", ())),
            payload=dict(data.get("payload", {})),
            updates=int(data.get("updates", 0)),
        )


def _severity(value: Any) -> Severity:
    """A stored severity; one this code does not know (a newer or damaged book) is kept as a warning."""
    for known in SEVERITIES:
        if value == known:
            return known
    return "warning"


class AlertBook:
    """Turns detections into Events with a stable ``alert_id`` per incident and stores them first.

    ``state_path`` is a JSON copy of the open alerts, written atomically on each raise and clear. The outbox
    database is the authority; the copy is read only when the database holds no book at all (it was replaced
    after corruption, now or in an earlier run), so open alerts survive even a lost database.
    """

    def __init__(
        self,
        state_path: Path,
        node_id: str,
        clock: Clock,
        outbox: Outbox,
        *,
        renotify_s: float = DEFAULT_RENOTIFY_S,
    ) -> None:
        if renotify_s <= 0:
            raise ValueError("renotify_s must be > 0")
        self.state_path = Path(state_path)
        self.node_id = node_id
        self.renotify_s = renotify_s
        self._clock = clock
        self._outbox = outbox
        self._lock = threading.RLock()
        self._open: dict[tuple[str, str], OpenAlert] = self._load()
        if self._open:
            log.warning(
                "alerts: %d alert(s) still open from before the restart: %s; re-sending them",
                len(self._open),
                ", ".join(f"{a.kind}/{a.key or '-'} {a.alert_id}" for a in self._open.values()),
            )

    # ------------------------------------------------------------------------------------------ persistence
    def _load(self) -> dict[tuple[str, str], OpenAlert]:
        raw = self._outbox.read_state(STATE_KEY)
        source = "outbox"
        # no book in the database at all: a fresh database (first start, or one that replaced a corrupt
        # file, now or in an earlier run); the copy then holds what was open when the old one was lost
        if raw is None and self.state_path.exists():
            try:
                raw = self.state_path.read_text(encoding="utf-8")
                source = str(self.state_path)
            except OSError as exc:
                log.error("alerts: cannot read %s: %s", self.state_path, exc)
        if not raw:
            return {}
        try:
            items = [OpenAlert.from_json(d) for d in json.loads(raw)]
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "alerts: open-alert state from %s unreadable (%s: %s); starting empty", source, type(exc).__name__, exc
            )
            return {}
        return {(a.kind, a.key): a for a in items}

    def _state_json(self, book: Mapping[tuple[str, str], OpenAlert]) -> str:
        return json.dumps([a.to_json() for a in book.values()], ensure_ascii=False, separators=(",", ":"), default=str)

    def _write_copy(self, text: str) -> None:
        """Atomic copy (common.files.write_atomic)."""
        try:
            write_atomic(self.state_path, text)
        except OSError as exc:
            # the outbox holds the authoritative copy; this one only helps after a lost database
            log.error("alerts: cannot write %s: %s: %s", self.state_path, type(exc).__name__, exc)

    # ------------------------------------------------------------------------------------------ recording
    def record(self, detection: Detection, recipients: tuple[str, ...] = ()) -> Event:
        """Turn a detection into an Event, store it in the outbox (durable) and return it.

        raised when the incident is already open becomes updated; updated of an incident not open opens it
        (the raise was before a lost state); cleared closes it; observed becomes a plain state event.
        ``recipients`` default to the catalogue's for the kind (``common.catalogue``).
        """
        recipients = tuple(recipients) or catalogue.recipients(detection.kind)
        payload = dict(detection.payload)
        if detection.key and "key" not in payload:
            payload["key"] = detection.key
        now = self._clock.monotonic()
        with self._lock:
            incident = (detection.kind, detection.key)
            current = self._open.get(incident)
            book = dict(self._open)
            if detection.state == "observed":
                event = self._event(detection, "observed", "state", payload, None, recipients)
                return self._outbox.put(event)
            if detection.state in ("raised", "updated"):
                if current is None:
                    if detection.state == "updated":
                        log.warning("alerts: update of %s/%s that is not open: raising it", *incident)
                    opened = OpenAlert(
                        alert_id=str(uuid.uuid4()),
                        kind=detection.kind,
                        key=detection.key,
                        severity=detection.severity,
                        raised_wall=self._clock.wall(),
                        recipients=tuple(recipients),
                        payload=payload,
                        last_sent=now,
                    )
                    book[incident] = opened
                    event = self._event(detection, "raised", "alert", payload, opened.alert_id, opened.recipients)
                else:
                    changed = OpenAlert(**{**current.__dict__})
                    changed.severity = detection.severity
                    changed.recipients = tuple(recipients) or current.recipients
                    changed.payload = payload
                    changed.updates += 1
                    changed.last_sent = now
                    book[incident] = changed
                    event = self._event(detection, "updated", "alert", payload, changed.alert_id, changed.recipients)
            elif detection.state == "cleared":
                if current is None:
                    log.info("alerts: clear of %s/%s that is not open: sent as a state event", *incident)
                    event = self._event(detection, "cleared", "state", payload, None, recipients)
                    return self._outbox.put(event)
                del book[incident]
                event = self._event(
                    detection, "cleared", "alert", payload, current.alert_id, tuple(recipients) or current.recipients
                )
            else:
                raise ValueError(f"unknown detection state {detection.state!r}")
            text = self._state_json(book)
            stored = self._outbox.put(event, state={STATE_KEY: text})
            self._open = book  # only once the event and the book are durable together
            if event.state in ("raised", "cleared"):
                self._write_copy(text)
        log.info("alert %s %s/%s %s", event.state, detection.kind, detection.key or "-", event.alert_id)
        return stored

    def _event(
        self,
        detection: Detection,
        state: State,
        priority: Priority,
        payload: dict[str, Any],
        alert_id: str | None,
        recipients: tuple[str, ...],
    ) -> Event:
        return make_event(
            self.node_id,
            detection.kind,
            wall_time=self._clock.wall(),
            clock_synced=self._clock.wall_synced(),
            severity=detection.severity,
            state=state,
            priority=priority,
            payload=payload,
            alert_id=alert_id,
            recipients=tuple(recipients),
        )

    def due_renotify(self, now: float) -> list[Event]:
        """Re-send every alert open ``renotify_s`` or longer since its last event as an ``updated`` Event.

        ``now`` is monotonic time. Alerts open from before a restart are due at once.
        """
        sent: list[Event] = []
        with self._lock:
            for alert in list(self._open.values()):
                if alert.last_sent is not None and now - alert.last_sent < self.renotify_s:
                    continue
                payload = dict(alert.payload)
                payload["renotify"] = True
                payload["open_for_s"] = round(max(0.0, self._clock.wall() - alert.raised_wall), 1)
                event = make_event(
                    self.node_id,
                    alert.kind,
                    wall_time=self._clock.wall(),
                    clock_synced=self._clock.wall_synced(),
                    severity=alert.severity,
                    state="updated",
                    priority="alert",
                    payload=payload,
                    alert_id=alert.alert_id,
                    recipients=alert.recipients,
                )
                sent.append(self._outbox.put(event))
                alert.last_sent = now
        for event in sent:
            log.warning("alert re-sent (still open): %s %s", event.kind, event.alert_id)
        return sent

    @staticmethod
    def read_copy(path: Path) -> list[dict[str, Any]]:
        """The open alerts in a book's JSON copy, for another process on the node (the updater); [] if none."""
        try:
            items = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def open_alerts(self) -> list[OpenAlert]:
        """The alerts raised and not cleared, oldest first (copies)."""
        with self._lock:
            items = sorted(self._open.values(), key=lambda a: a.raised_wall)
            return [OpenAlert(**{**a.__dict__}) for a in items]

    def is_open(self, kind: str, key: str = "") -> bool:
        with self._lock:
            return (kind, key) in self._open
