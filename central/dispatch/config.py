"""The ``[dispatch]`` settings: which provider takes the kiosks' rides, and how long the central waits for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import setting


@dataclass(frozen=True, kw_only=True)
class DispatchSection:
    """Where rides go: the simulated fleet (default) or a dispatcher speaking the HTTP contract."""

    provider: Literal["fleet", "http"] = setting(
        "fleet", help="fleet: the simulated fleet ([fleet]); http: a dispatcher"
    )
    url: str = setting("", pattern=r"^(https?://\S+)?$", help="http: the dispatcher's base URL")
    secret: str = setting("", help="http: the shared HMAC-SHA256 key (requests to it and its callbacks)")
    callback_url: str = setting(
        "", pattern=r"^(https?://\S+)?$", help="http: the central's address as the dispatcher reaches it"
    )
    timeout_s: float = setting(3.0, min=0.2, max=30.0, help="a create or cancel not answered by then counts as down")
    search_timeout_s: float = setting(300.0, min=10.0, max=3600.0, help="no car assigned by then: no_car")

    def problems(self) -> list[str]:
        if self.provider == "http" and not (self.url and len(self.secret) >= 16):
            return ["provider 'http' needs url and a secret of at least 16 characters"]
        return []
