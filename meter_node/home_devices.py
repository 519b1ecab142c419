"""The homes' own inputs on the meter node's GPIO: the "I'm OK" and "going out" buttons and the flat's door contact.

Each is opened on its own. One that cannot be (its line held by another process, no GPIO chip, lgpio missing, a
wrong pin) is named in ``failed`` and logged, and the node goes on: the water of every home is what the node is
for, and a broken button must not leave a building's residents unwatched (the node used to stop at start, and
systemd to restart it every 5 s for ever). The node tells maintenance of each as a ``home_device_fault`` alert.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from meter_node.clock_frame import Input
from meter_node.config import MeterEntry

if TYPE_CHECKING:
    from gpiozero import Button, DigitalInputDevice

log = logging.getLogger(__name__)

# a household's config key -> what its events are called in the presses queue
DEVICES: tuple[tuple[str, Input], ...] = (("ok_button", "ok"), ("away_button", "out"), ("door", "door"))


class HomeDevices:
    """The homes' buttons and door contacts, opened through hal.gpio; what happens on them goes to ``presses`` as
    (meter id, "ok" / "out" / "door", ``now()``), from gpiozero's threads. ``failed``: (meter id, config key) ->
    why it could not be opened; ``working``: those that were."""

    def __init__(self, meters: Iterable[MeterEntry], pin_factory: str, now: Callable[[], float]) -> None:
        self.presses: queue.SimpleQueue[tuple[str, Input, float]] = queue.SimpleQueue()
        self.failed: dict[tuple[str, str], str] = {}
        self.working: set[tuple[str, str]] = set()
        self._devices: list[Button | DigitalInputDevice] = []
        self._now = now
        wanted = [
            (meter.id, key, what, pin)
            for meter in meters
            for key, what in DEVICES
            if (pin := getattr(meter.household, key)) is not None
        ]
        if wanted:  # gpiozero only then: it adds 2.3 MB resident (measured) to a node, most have no such device
            try:
                self._open(wanted, pin_factory)
            except BaseException:  # not a pin's fault (those are told): release the lines already held
                self.close()
                raise

    def _open(self, wanted: list[tuple[str, str, Input, Any]], pin_factory: str) -> None:
        from gpiozero.exc import GPIOZeroError

        from hal.gpio import make_button, make_input, use_pin_factory

        try:
            use_pin_factory(pin_factory)
        except GPIOZeroError as exc:
            for meter_id, key, _, _ in wanted:
                self._failed(meter_id, key, exc)
            return
        for meter_id, key, what, pin in wanted:
            try:
                device = make_input(pin) if what == "door" else make_button(pin)
            except GPIOZeroError as exc:
                self._failed(meter_id, key, exc)
                continue
            told = lambda mid=meter_id, w=what: self.presses.put((mid, w, self._now()))  # noqa: E731
            if what == "door":  # the door has no press: each move is a sign of life
                device.when_activated = device.when_deactivated = told
            else:
                device.when_pressed = told
            self._devices.append(device)
            self.working.add((meter_id, key))

    def _failed(self, meter_id: str, key: str, exc: Exception) -> None:
        self.failed[(meter_id, key)] = f"{type(exc).__name__}: {exc}"
        log.error("meter %s: the home's %s is unusable (its water is still watched): %s", meter_id, key, exc)

    def put(self, meter_id: str, what: Input) -> None:
        """What a device would put (the simulated community, tests)."""
        self.presses.put((meter_id, what, self._now()))

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()
