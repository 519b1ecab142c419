"""One line of ``provision selftest``'s table: a named check with its result and what the technician should know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Check:
    """One line of the table."""

    name: str
    result: str  # pass, fail, skip
    detail: str
    hardware_error: bool = False  # the device could not be used at all (pin factory, serial port)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "detail": self.detail}
