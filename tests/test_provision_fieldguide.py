"""The field guide's wiring tables agree with examples/*.toml, provision's standard wiring and the Pi header."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from provisioning.wiring import STANDARD_WIRING

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "field-guide.md"
# | what | `elevator.door` | 17 | 11 | ...
ROW = re.compile(r"^\|[^|]*\|\s*`(?P<key>[a-z_.\[\]]+)`\s*\|\s*(?P<bcm>\d+)\s*\|\s*(?P<header>\d+)\s*\|")


def wiring_rows() -> list[tuple[str, int, int]]:
    rows = []
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows.append((match["key"], int(match["bcm"]), int(match["header"])))
    return rows


def test_the_guide_has_wiring_for_every_role_with_pins() -> None:
    roles = {key.split(".")[0] for key, _, _ in wiring_rows()}
    assert {"elevator", "kiosk"} <= roles
    assert len(wiring_rows()) >= 9


@pytest.mark.parametrize(("key", "bcm", "header"), wiring_rows(), ids=lambda v: str(v))
def test_row_matches_header_standard_wiring_and_example(key: str, bcm: int, header: int) -> None:
    factory = MockFactory()
    try:
        found = [(h.name, pin.number) for h, pin in factory.board_info.find_pin(f"GPIO{bcm}")]
    finally:
        factory.close()
    assert found == [("J8", header)], f"{key}: BCM {bcm} is not header pin {header}"
    path = tuple(key.split("."))
    assert STANDARD_WIRING.get((*path, "pin")) == bcm, f"{key}: provision init would suggest another pin"
    role = path[0]
    example = tomllib.loads((ROOT / "examples" / f"{role}.toml").read_text(encoding="utf-8"))
    table = example.get(role, {})
    for name in path[1:]:
        table = table.get(name, {}) if isinstance(table, dict) else {}
    if isinstance(table, dict) and "pin" in table:
        assert table["pin"] == bcm, f"{key}: examples/{role}.toml uses BCM {table['pin']}"


def test_meter_ok_button_matches_the_example() -> None:
    example = tomllib.loads((ROOT / "examples" / "meter.toml").read_text(encoding="utf-8"))
    pins = [m["household"]["ok_button"]["pin"] for m in example["meter"]["meters"] if "ok_button" in m["household"]]
    assert pins and all(pin == STANDARD_WIRING[("household", "ok_button", "pin")] for pin in pins)
    assert f"BCM {pins[0]} (pin 29)" in GUIDE.read_text(encoding="utf-8")


def test_ground_pins_named_in_the_guide_are_ground() -> None:
    factory = MockFactory()
    try:
        header = factory.board_info.headers["J8"]
        ground = sorted(number for number, pin in header.pins.items() if pin.name == "GND")
    finally:
        factory.close()
    assert "Ground pins: " + ", ".join(str(n) for n in ground) + "." in GUIDE.read_text(encoding="utf-8")
