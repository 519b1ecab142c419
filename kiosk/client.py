"""The central's rides API over the one HTTP client (common/http.py): order (idempotent by request id), status,
cancel, and a reachability probe.

Errors come in two classes the ride machine treats differently: ``CentralUnreachableError`` (no answer,
timeouts, 5xx, 429: try again later) and ``CentralRejectedError`` (4xx or a reply that breaks the contract:
retrying will not help). The token is sent as a Bearer header and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import NodeConfig
from common.contract import API_PREFIX
from common.http import HttpClient, HttpFailure, HttpReply
from kiosk.ride_events import Car

log = logging.getLogger(__name__)
API = API_PREFIX


class RidesError(Exception):
    """Any failure of a rides call."""


class CentralUnreachableError(RidesError):
    """No usable answer now (connection refused, timeout, 5xx, 429); the same call may work later."""


class CentralRejectedError(RidesError):
    """The central refused the call (4xx) or answered outside the contract; repeating it will not help."""

    def __init__(self, http_status: int, reason: str) -> None:
        super().__init__(f"HTTP {http_status}: {reason}")
        self.http_status = http_status
        self.reason = reason


@dataclass(frozen=True)
class RideStatus:
    """One answer about a ride."""

    ride_id: str
    status: str
    car: Car | None = None
    eta_s: float | None = None


def parse_ride(data: Any) -> RideStatus:
    """A ride JSON object -> RideStatus; raises CentralRejectedError when it breaks the contract."""
    if not isinstance(data, Mapping):
        raise CentralRejectedError(200, "ride reply is not a JSON object")
    ride_id, status = data.get("ride_id"), data.get("status")
    if not isinstance(ride_id, str | int) or not isinstance(status, str):
        raise CentralRejectedError(200, "ride reply without ride_id or status")
    car = None
    assigned = data.get("assigned") or data.get("car")
    if isinstance(assigned, Mapping) and assigned.get("plate"):
        car = Car(
            plate=str(assigned["plate"]),
            colour=str(assigned.get("colour") or assigned.get("color") or ""),
            model=str(assigned.get("model") or ""),
            colour_zh=str(assigned.get("colour_zh") or ""),
            model_zh=str(assigned.get("model_zh") or ""),
        )
    eta = data.get("eta_s")
    eta_s = float(eta) if isinstance(eta, int | float) and not isinstance(eta, bool) else None
    return RideStatus(str(ride_id), status, car, eta_s)


class RidesClient:
    """Calls /api/v1/rides for one kiosk, from one worker thread (one request at a time)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        pickup_point: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        total_timeout_s: float = 30.0,
        max_reply_bytes: int = 4096 * 1024,
        ca_bundle: Path | None = None,
    ) -> None:
        self.base = base_url.rstrip("/") + API
        self._token = token
        self.pickup_point = pickup_point
        # verification is always on; a site CA is added, never a way to switch it off
        self.http = HttpClient(
            ca_bundle=ca_bundle,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            total_timeout_s=total_timeout_s,
            max_reply_bytes=max_reply_bytes,
        )

    @classmethod
    def from_config(cls, config: NodeConfig) -> RidesClient:
        """Built from the node config; a missing token file gives a client whose calls are rejected (401)."""
        token = read_token(config.central.token_file)
        return cls(
            config.central.url,
            token,
            config.role_config.pickup_point,
            connect_timeout_s=config.central.connect_timeout_s,
            read_timeout_s=config.central.read_timeout_s,
            total_timeout_s=config.central.request_limit_s,
            max_reply_bytes=int(config.central.max_reply_kb * 1024),
            ca_bundle=config.central.ca_bundle,
        )

    # ------------------------------------------------------------------------------------------- calls
    def request(self, request_id: str, phone_tail: str | None = None) -> RideStatus:
        """Order a car to the pickup point; the same ``request_id`` always gives the same ride."""
        body: dict[str, Any] = {"request_id": request_id, "pickup_point": self.pickup_point}
        if phone_tail:
            body["phone_tail"] = phone_tail
        return parse_ride(self._call("POST", "/rides", body))

    def status(self, ride_id: str) -> RideStatus:
        return parse_ride(self._call("GET", f"/rides/{ride_id}"))

    def cancel(self, ride_id: str) -> RideStatus:
        return parse_ride(self._call("POST", f"/rides/{ride_id}/cancel", {}))

    def probe(self) -> None:
        """Raises CentralUnreachableError unless the central answers HTTP at all (any status counts)."""
        try:
            self.http.request("GET", f"{self.base}/health", read_body=False)
        except HttpFailure as exc:
            # the failure's class says what failed (ConnectTimeout, ConnectionError, SSLError), no headers echoed
            raise CentralUnreachableError(exc.name) from None

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        if not self._token:
            raise CentralRejectedError(401, "no node token (run provisioning)")
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            resp = self.http.request_json(method, self.base + path, body, headers=headers)
        except HttpFailure as exc:
            raise CentralUnreachableError(exc.name) from None
        if resp.status >= 500 or resp.status == 429:
            raise CentralUnreachableError(f"HTTP {resp.status}")
        if resp.status >= 400:
            raise CentralRejectedError(resp.status, _detail(resp))
        try:
            return resp.json()
        except ValueError:
            raise CentralRejectedError(resp.status, "reply is not JSON") from None


def _detail(resp: HttpReply) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.reason or "error"
    detail = (data.get("message") or data.get("detail")) if isinstance(data, Mapping) else None
    return str(detail)[:200] if detail else (resp.reason or "error")


def read_token(path: Path) -> str | None:
    """The node token from its file, or None when there is none yet (the kiosk then shows the hotline)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        log.warning("no node token at %s: rides will be refused until the node is provisioned", path)
        return None
    except PermissionError:
        log.error("node token %s is not readable by this user", path)
        return None
    return token or None
