"""The ``[meter]`` config section: the RS-485 bus, the meters on it and the wellbeing thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import SerialPort, setting


@dataclass(frozen=True, kw_only=True)
class MeterConfig:
    serial: SerialPort = setting(help="the RS-485 bus")
