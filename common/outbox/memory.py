"""What the outbox holds in memory while the disk refuses writes (full, read-only, failing): the events not yet
stored, the node state not yet written, and the acknowledgements not yet deleted. Bounded: when full, the
oldest reading goes first, then the oldest state event, then the oldest repeat of an open alert; a new alert
or the first event of an incident is the last thing to go. Everything is written out once the disk allows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from common.events import Event

PRIORITIES: tuple[str, ...] = ("alert", "state", "reading")


class MemoryQueue:
    """``add`` events (returns those pushed out by the bound), ``remove`` acknowledged ids, ``state`` and
    ``acked`` for the next write."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: dict[str, list[Event]] = {p: [] for p in PRIORITIES}
        self.state: dict[str, str | None] = {}
        self.acked: dict[str, list[tuple[int, str]]] = {p: [] for p in PRIORITIES}

    def __len__(self) -> int:
        return sum(len(v) for v in self.events.values())

    def counts(self) -> dict[str, int]:
        return {p: len(v) for p, v in self.events.items()}

    def empty(self) -> bool:
        return not len(self) and not self.state and not any(self.acked.values())

    def add(self, events: Iterable[Event], state: Mapping[str, str | None] | None = None) -> list[Event]:
        for event in events:
            self.events[event.priority].append(event)
        self.state.update(state or {})
        pushed: list[Event] = []
        while len(self) > self.limit:
            pushed.append(self._push_out())
        return pushed

    def _push_out(self) -> Event:
        for prio in ("reading", "state"):
            if self.events[prio]:
                return self._drop(prio, 0)
        alerts = self.events["alert"]
        repeat = next((i for i, e in enumerate(alerts) if e.payload.get("renotify")), 0)
        return self._drop("alert", repeat)

    def _drop(self, prio: str, index: int) -> Event:
        return self.events[prio].pop(index)

    def remove(self, ids: set[str]) -> set[str]:
        """Forget these acknowledged events; returns the ids that were here."""
        found: set[str] = set()
        for prio, events in self.events.items():
            kept = [e for e in events if e.id not in ids]
            if len(kept) != len(events):
                found |= {e.id for e in events} - {e.id for e in kept}
                self.events[prio] = kept
        return found

    def find(self, event_id: str) -> Event | None:
        return next((e for events in self.events.values() for e in events if e.id == event_id), None)

    def all_events(self) -> list[Event]:
        return [e for p in PRIORITIES for e in self.events[p]]

    def acked_ids(self) -> set[str]:
        return {event_id for rows in self.acked.values() for _, event_id in rows}

    def clear_written(self) -> None:
        """Everything here reached the disk."""
        self.events = {p: [] for p in PRIORITIES}
        self.state = {}
        self.acked = {p: [] for p in PRIORITIES}
