"""The standard wiring of each role (BCM numbers, the same as examples/*.toml and docs/field-guide.md).

Used as the suggested answer when ``provision init`` asks for a pin, so a box wired by the book is set up by
pressing Enter. The service account name lives here too, shared by init, register and install.
"""

from __future__ import annotations

from typing import Any

SERVICE_USER = "changbai"

# key path in the config -> suggested value; keys a role section does not have are simply never asked
STANDARD_WIRING: dict[tuple[str, ...], Any] = {
    ("elevator", "door", "pin"): 17,
    ("elevator", "occupancy", "pin"): 27,
    ("elevator", "moving", "pin"): 22,
    ("elevator", "level_zone", "pin"): 23,
    ("elevator", "alarm_button", "pin"): 24,
    ("elevator", "inspection", "pin"): 25,
    ("elevator", "power_fail", "pin"): 5,
    ("kiosk", "button", "pin"): 26,
    ("kiosk", "led", "pin"): 12,
    ("meter", "serial", "port"): "/dev/ttyUSB0",
    ("household", "ok_button", "pin"): 5,
}


def suggestion(path: tuple[str, ...]) -> Any:
    """The standard value for a key path (array indexes like ``[0]`` are ignored), or None."""
    plain = tuple(p for p in path if not p.startswith("["))
    for length in range(len(plain), 1, -1):
        found = STANDARD_WIRING.get(plain[-length:])
        if found is not None:
            return found
    return None
