"""When a node may update, as a pure function: never while an urgent alert is open (a trapped passenger, a
silent home), and a kiosk only when idle and within its night window. A technician's ``force`` lifts the
window, never the urgent-alert rule nor a ride in progress."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

WINDOW_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"


def in_window(window: str, now: dt.time) -> bool:
    """Is local time ``now`` inside ``HH:MM-HH:MM`` (which may cross midnight, e.g. 23:00-05:00)?"""
    if not re.fullmatch(WINDOW_PATTERN, window):
        raise ValueError(f"window {window!r} is not HH:MM-HH:MM")
    start_text, end_text = window.split("-")
    start, end = dt.time.fromisoformat(start_text), dt.time.fromisoformat(end_text)
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def blockers(
    role: str,
    open_alerts: Iterable[Mapping[str, Any]],
    kiosk_state: str | None,
    local_now: dt.time,
    window: str,
    force: bool = False,
) -> list[str]:
    """Every reason not to update now (empty: go ahead)."""
    out = []
    urgent = [a for a in open_alerts if a.get("severity") == "urgent"]
    if urgent:
        kinds = ", ".join(sorted({str(a.get("kind", "?")) for a in urgent}))
        out.append(f"an urgent alert is open on the node ({kinds}); updating waits until it is cleared")
    if role == "kiosk":
        if kiosk_state not in (None, "idle"):
            out.append(f"the kiosk is busy ({kiosk_state}); it updates only when idle")
        if not force and not in_window(window, local_now):
            out.append(f"outside the kiosk's night window {window} (local time {local_now:%H:%M})")
    return out


def trial_verdict(
    health: Mapping[str, Any] | None,
    version: str,
    switched_wall: float,
    now_wall: float,
    deadline_wall: float,
    timeout_s: float,
) -> tuple[str, str]:
    """("healthy" | "unhealthy" | "wait", why) for a version on trial, from the node's own health snapshot.

    Healthy: the new version's process (started after the switch) had a heartbeat accepted by the central and
    its self-test passed. Unhealthy: its self-test failed, or the deadline passed without that.
    """
    h = health or {}
    fresh = h.get("version") == version and (h.get("started_wall") or 0) >= switched_wall - 1.0
    beat = h.get("heartbeat_ok_wall")
    if fresh and h.get("selftest_ok") is False:
        failed = ", ".join(h.get("selftest_failed") or []) or "see its selftest event"
        return "unhealthy", f"{version}'s self-check failed ({failed})"
    if fresh and h.get("selftest_ok") and beat is not None and beat >= h["started_wall"]:
        return (
            "healthy",
            f"heartbeat accepted and self-check passed {max(0.0, beat - switched_wall):.0f} s after the switch",
        )
    if now_wall < deadline_wall and now_wall >= switched_wall - 60.0:
        return "wait", "waiting for the new version's first healthy heartbeat"
    if not fresh:
        running = h.get("version") or "nothing"
        return "unhealthy", f"{version} did not come up within {timeout_s:.0f} s (the node's health shows {running})"
    if beat is None or beat < h["started_wall"]:
        return "unhealthy", f"{version} runs but no heartbeat reached the central within {timeout_s:.0f} s"
    return "unhealthy", f"{version} did not pass its self-check within {timeout_s:.0f} s"
