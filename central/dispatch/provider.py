"""The HTTP dispatch provider (docs/api.md#taxi-dispatch-contract) and the status of a ride it took (pure).

``HttpProvider.create`` asks the dispatcher for a car within ``timeout_s``; an answer other than 2xx, a timeout
or a refused connection is a ``Decision`` that did not accept, which the central turns into ``no_car`` at once.
Requests are signed like the notifier's webhooks (``X-Changbai-Timestamp``, ``X-Changbai-Signature``) and so
are the dispatcher's callbacks (``central.notify.channels.verify``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from central.dispatch.config import DispatchSection
from central.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, HttpRequest, post, sign
from common.http import HttpFailure, HttpReply


@dataclass(frozen=True)
class Decision:
    accepted: bool
    provider_ride_id: str | None = None
    reason: str = ""


class HttpProvider:
    """A dispatcher behind the contract: ``POST {url}/rides`` and ``POST {url}/rides/{id}/cancel``."""

    name = "http"

    def __init__(self, section: DispatchSection, callback_url: str) -> None:
        self.section = section
        self.callback_url = callback_url

    def _post(self, path: str, body: dict[str, Any]) -> HttpReply:
        """Signed, within ``timeout_s`` in all, never following a redirect (as the notifier's webhooks)."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(body.get("ride_id", "")),
                   TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(self.section.secret, stamp, data)}  # fmt: skip
        return post(HttpRequest(self.section.url.rstrip("/") + path, headers, data), self.section.timeout_s, True)

    def create(self, ride: dict[str, Any]) -> Decision:
        body = {
            "schema": "changbai-dispatch/1",
            "ride_id": ride["ride_id"],
            "pickup_point": ride["pickup_point"],
            "phone_tail": ride.get("phone_tail"),
            "requested_at": ride["requested_at"],
            "callback_url": self.callback_url,
        }
        try:
            reply = self._post("/rides", body)
        except HttpFailure as exc:
            return Decision(False, None, f"provider_down: {exc.name}")
        if not 200 <= reply.status < 300:
            kind = "provider_refused" if 400 <= reply.status < 500 else "provider_down"
            return Decision(False, None, f"{kind}: HTTP {reply.status}")
        try:
            answer = reply.json()
            return Decision(True, str(answer["provider_ride_id"]), "")
        except (ValueError, KeyError, TypeError):
            return Decision(False, None, "provider_down: the answer is not the contract's JSON")

    def cancel(self, ride_id: str, provider_ride_id: str | None) -> bool:
        try:
            reply = self._post(f"/rides/{provider_ride_id or ride_id}/cancel", {"ride_id": ride_id})
        except HttpFailure:
            return False
        return 200 <= reply.status < 300


def dispatched_view(
    row: dict[str, Any], requested_at: float, now: float, search_timeout_s: float, cancelled_at: float | None
) -> dict[str, Any]:
    """The ride's status as the provider last told it (in the shape of ``central.fleet.ride_view``): a ride
    still searching after ``search_timeout_s`` is ``no_car`` (the dispatcher went quiet: never a hang)."""
    view: dict[str, Any] = {"status": row["status"], "assigned": row["car"], "eta_s": None, "no_car_reason": None}
    view.update(
        assigned_at=row["assigned_at"], arrived_at=row["arrived_at"], no_car_at=row["no_car_at"], cancelled_at=None
    )
    if cancelled_at is not None and row["status"] not in ("arrived", "no_car"):
        view.update(status="cancelled", cancelled_at=cancelled_at)
        return view
    if row["status"] == "searching" and now - requested_at >= search_timeout_s:
        view.update(status="no_car", no_car_at=requested_at + search_timeout_s, no_car_reason="no_answer")
    elif row["status"] == "no_car":
        view["no_car_reason"] = row["reason"].split(":")[0] or "no_car"
    elif row["status"] == "assigned" and row["eta_s"] is not None:
        view["eta_s"] = max(0, round(row["eta_s"] - (now - row["eta_from"])))
    elif row["status"] == "arrived":
        view["eta_s"] = 0
    return view
