"""The ``[kiosk]`` config section: pickup point, hotline, screen, arcade button and LED."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import setting


@dataclass(frozen=True, kw_only=True)
class KioskConfig:
    pickup_point: str = setting(help="name of the fixed pickup point, shown and spoken")
    hotline: str = setting(help="phone number shown when the central cannot be reached")
