"""The ``[accounts]`` settings: how long a console session lasts and how many wrong passwords are tolerated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import setting


@dataclass(frozen=True, kw_only=True)
class AccountsSection:
    """Per-person console accounts (users are added with `central user add`)."""

    session_hours: float = setting(12.0, min=0.25, max=168.0, help="a login lasts this long (a shift)")
    cookie_secure: Literal["auto", "always", "never"] = setting(
        "auto", help="the session cookie's Secure flag: auto = when the request came over HTTPS"
    )
    login_failures_per_min: int = setting(10, min=1, max=1000, help="wrong passwords per address before 429")
