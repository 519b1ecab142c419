"""Alert lifecycle shared by every role: one incident (kind + key) = one alert with a stable id.

A detector's raised/updated/cleared detections of one incident become Events carrying the same ``alert_id``;
the Event is in the outbox before ``record`` returns, together with the book of open alerts (one SQLite
transaction), so an alert and its bookkeeping never disagree and open alerts survive a restart. The outbox is
the one store of open incidents: nothing else on the node keeps a copy (``read_open`` lets another process,
the updater, look). Open alerts are re-sent as ``updated`` every ``renotify_s`` until a person takes them in at the
central (EN 81-28: an alarm is repeated until it is acknowledged, then the re-sending stops; ``hear`` takes what
the central says, ``common.acks`` asks it) or they clear.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import catalogue
from common.catalogue import SEVERITIES, Priority, Severity, State
from common.clock import Clock
from common.events import Detection, Event, make_event
from common.outbox import Outbox, peek_state

log = logging.getLogger(__name__)

STATE_KEY = "alerts.open"
TAKEN_IN = ("acknowledged", "resolved")  # the central's states in which a person has taken an alert in
DEFAULT_RENOTIFY_S = 300.0
# versions up to 2026-12 also kept the book as a JSON file beside the outbox; read once, then removed
LEGACY_COPY = "alerts.json"


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
    heard: str = ""  # where the central says it stands: "" (open, or not known yet), acknowledged, resolved
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
            heard=str(data.get("heard") or ""),
        )


def _severity(value: Any) -> Severity:
    """A stored severity; one this code does not know (a newer or damaged book) is kept as a warning."""
    for known in SEVERITIES:
        if value == known:
            return known
    return "warning"


class AlertBook:
    """Turns detections into Events with a stable ``alert_id`` per incident and stores them first.

    The open alerts live in the outbox (node state ``alerts.open``, written in the same transaction as each
    alert event); this object holds them in memory only as the outbox has them.
    """

    def __init__(self, node_id: str, clock: Clock, outbox: Outbox, *, renotify_s: float = DEFAULT_RENOTIFY_S) -> None:
        if renotify_s <= 0:
            raise ValueError("renotify_s must be > 0")
        self.node_id = node_id
        self.renotify_s = renotify_s
        self._clock = clock
        self._outbox = outbox
        self._lock = threading.RLock()
        self._open: dict[tuple[str, str], OpenAlert] = _parse(outbox.read_state(STATE_KEY), "the outbox")
        if self._open:
            log.warning(
                "alerts: %d alert(s) still open from before the restart: %s; re-sending them",
                len(self._open),
                ", ".join(f"{a.kind}/{a.key or '-'} {a.alert_id}" for a in self._open.values()),
            )

    def _state_json(self, book: Mapping[tuple[str, str], OpenAlert]) -> str:
        return _book_json(book.values())

    # ------------------------------------------------------------------------------------------ recording
    def record(
        self, detection: Detection, recipients: tuple[str, ...] = (), *, state: Mapping[str, str | None] | None = None
    ) -> Event:
        """Turn a detection into an Event, store it in the outbox (durable) and return it.

        raised when the incident is already open becomes updated; updated of an incident not open opens it
        (the raise was before a lost state); cleared closes it; observed becomes a plain state event.
        ``recipients`` default to the catalogue's for the kind (``common.catalogue``). ``state`` is more node
        state (key -> JSON text) written in the same transaction (see ``record_many``).
        """
        return self.record_many([(detection, recipients)], state=state)[0]

    def record_many(
        self,
        detections: Sequence[tuple[Detection, tuple[str, ...]]],
        *,
        state: Mapping[str, str | None] | None = None,
    ) -> list[Event]:
        """``record`` for each (detection, recipients), all in one outbox transaction with the book of open
        alerts and ``state``: a pure core's saved state (the lift detector's incidents) is on disk together with
        the alerts it decided, or neither is. Raises OutboxError with nothing stored."""
        now = self._clock.monotonic()
        with self._lock:
            book = dict(self._open)
            events = [self._apply(book, detection, recipients, now) for detection, recipients in detections]
            changed = any(e.priority == "alert" for e in events)
            extra = {**({STATE_KEY: self._state_json(book)} if changed else {}), **(state or {})}
            stored = self._outbox.put_many(events, state=extra or None)
            self._open = book  # only once the events and the book are durable together
        for event in stored:
            if event.priority == "alert":
                log.info("alert %s %s/%s %s", event.state, event.kind, event.payload.get("key", "-"), event.alert_id)
        return stored

    def _apply(
        self, book: dict[tuple[str, str], OpenAlert], detection: Detection, recipients: tuple[str, ...], now: float
    ) -> Event:
        """The event for one detection, with ``book`` (a working copy) changed as it says."""
        recipients = tuple(recipients) or catalogue.recipients(detection.kind)
        payload = dict(detection.payload)
        if detection.key and "key" not in payload:
            payload["key"] = detection.key
        incident = (detection.kind, detection.key)
        current = book.get(incident)
        if detection.state == "observed":
            return self._event(detection, "observed", "state", payload, None, recipients)
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
                return self._event(detection, "raised", "alert", payload, opened.alert_id, opened.recipients)
            changed = OpenAlert(**{**current.__dict__})
            changed.severity = detection.severity
            changed.recipients = tuple(recipients) or current.recipients
            changed.payload = payload
            changed.updates += 1
            changed.last_sent = now
            if changed.heard == "resolved":  # something new opens a closed alert again at the central: asked again
                changed.heard = ""
            book[incident] = changed
            return self._event(detection, "updated", "alert", payload, changed.alert_id, changed.recipients)
        if detection.state == "cleared":
            if current is None:
                log.info("alerts: clear of %s/%s that is not open: sent as a state event", *incident)
                return self._event(detection, "cleared", "state", payload, None, recipients)
            del book[incident]
            return self._event(
                detection, "cleared", "alert", payload, current.alert_id, tuple(recipients) or current.recipients
            )
        raise ValueError(f"unknown detection state {detection.state!r}")

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

    def hear(self, standing: Mapping[str, Mapping[str, Any]]) -> list[OpenAlert]:
        """What the central says of the open alerts (``GET /acknowledgements``: alert id -> ``{"state", "by",
        "at"}``), kept with the book: an alert a person has taken in is not re-sent, and is again once the central
        says it is open (it opened it again). A trapped passenger's alert closed while the node still sees him is
        re-sent at once: the central opens it again (``EventKind.reopens``). Returns the alerts newly acknowledged
        (copies), for the node to tell the person waiting that somebody has the alarm."""
        newly = []
        with self._lock:
            book = dict(self._open)
            for incident, alert in book.items():
                said = standing.get(alert.alert_id)
                heard = str(said.get("state")) if said and said.get("state") in TAKEN_IN else ""
                if said is None or heard == alert.heard:
                    continue
                changed = OpenAlert(**{**alert.__dict__, "heard": heard})
                if heard == "resolved" and _reopens(alert.kind):
                    changed.last_sent = None  # re-sent at the next look
                book[incident] = changed
                newly += [OpenAlert(**{**changed.__dict__})] if heard == "acknowledged" and not alert.heard else []
            if book != self._open:
                self._outbox.put_state({STATE_KEY: self._state_json(book)})
                self._open = book
        return newly

    def asking(self) -> tuple[list[str], bool]:
        """The open alerts' ids to ask the central about, and whether one waits to be taken in (asked often)."""
        with self._lock:
            alerts = list(self._open.values())
        return [a.alert_id for a in alerts], any(not a.heard or _reopens(a.kind) for a in alerts)

    def due_renotify(self, now: float) -> list[Event]:
        """Re-send every alert open ``renotify_s`` or longer since its last event as an ``updated`` Event, unless a
        person has taken it in at the central (``hear``).

        ``now`` is monotonic time. Alerts open from before a restart are due at once.
        """
        sent: list[Event] = []
        with self._lock:
            for alert in list(self._open.values()):
                if alert.last_sent is not None and now - alert.last_sent < self.renotify_s:
                    continue
                if alert.heard == "acknowledged" or (alert.heard == "resolved" and not _reopens(alert.kind)):
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

    def open_alerts(self) -> list[OpenAlert]:
        """The alerts raised and not cleared, oldest first (copies)."""
        with self._lock:
            items = sorted(self._open.values(), key=lambda a: a.raised_wall)
            return [OpenAlert(**{**a.__dict__}) for a in items]

    def is_open(self, kind: str, key: str = "") -> bool:
        with self._lock:
            return (kind, key) in self._open


def _reopens(kind: str) -> bool:
    """A kind whose re-send opens a closed alert again at the central (a trapped passenger; unknown kinds too)."""
    entry = catalogue.CATALOGUE.get(kind)
    return entry is None or entry.reopens


def _book_json(alerts: Iterable[OpenAlert]) -> str:
    return json.dumps([a.to_json() for a in alerts], ensure_ascii=False, separators=(",", ":"), default=str)


def _parse(raw: str | None, source: str) -> dict[tuple[str, str], OpenAlert]:
    """A stored book (JSON list of open alerts) by incident; empty when there is none or it is unreadable."""
    if not raw:
        return {}
    try:
        items = [OpenAlert.from_json(d) for d in json.loads(raw)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.error(
            "alerts: open-alert state from %s unreadable (%s: %s); starting empty", source, type(exc).__name__, exc
        )
        return {}
    return {(a.kind, a.key): a for a in items}


def adopt_legacy_copy(state_dir: Path, outbox: Outbox) -> int:
    """Once, on the first start after the upgrade: an ``alerts.json`` an older version kept beside the outbox.

    When the outbox holds no book (its database was replaced after corruption while the old version ran), the
    copy's open alerts become the outbox's book, so a node upgraded in the field keeps its open incidents and
    their alert ids; when it holds one, that book is the authority, as it was then. The file is removed once
    the outbox has what it held. Returns how many open alerts were taken over.
    """
    path = Path(state_dir) / LEGACY_COPY
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    except OSError as exc:  # left in place: the next start tries again
        log.error("alerts: cannot read the old copy %s: %s: %s", path, type(exc).__name__, exc)
        return 0
    taken = 0
    if outbox.read_state(STATE_KEY) is None:
        book = _parse(raw, str(path))
        if book:
            outbox.put_state({STATE_KEY: _book_json(book.values())})  # durable before the copy goes
            taken = len(book)
            log.warning("alerts: %d open alert(s) taken over from %s", taken, path)
    if outbox.volatile:  # the disk refuses writes: the book is only in memory yet, keep the copy for the next start
        return taken
    try:
        path.unlink()
    except OSError as exc:
        log.error("alerts: cannot remove the old copy %s: %s: %s", path, type(exc).__name__, exc)
    return taken


def read_open(outbox_file: Path) -> list[dict[str, Any]]:
    """The open alerts in a node's outbox, read by another process on the node (the updater); [] when there is
    no outbox or it cannot be read (logged)."""
    try:
        raw = peek_state(Path(outbox_file), STATE_KEY)
    except (OSError, sqlite3.Error) as exc:
        log.warning("alerts: cannot read the open alerts in %s: %s: %s", outbox_file, type(exc).__name__, exc)
        return []
    return [a.to_json() for a in _parse(raw, str(outbox_file)).values()]
