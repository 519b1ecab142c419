"""An in-process wake-up when something an operator sees changed (an event stored, an alert handled, a ride).

Routes call ``changed()``; the notifier and each open console stream subscribe. It carries no data: whoever is
woken reads what changed from storage by cursor, so several central processes stay correct (each also looks on
its own every second or so); in one process the wake-up makes it immediate.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class ChangeHub:
    """Callbacks run on every change; ``waiter()`` gives an asyncio.Event set on the next change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], object]] = []

    def subscribe(self, listener: Callable[[], object]) -> Callable[[], None]:
        """Run ``listener()`` on every change; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def waiter(self) -> tuple[asyncio.Event, Callable[[], None]]:
        """An event set (on the caller's loop) at each change, and the function that stops it."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        return event, self.subscribe(lambda: loop.call_soon_threadsafe(event.set))
