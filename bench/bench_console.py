"""The duty console in Debian's chromium against the real central: how soon a new urgent alert is on screen, how
long the board takes to render with 500 open alerts, and how soon each notification reaches a live receiver.

Targets (issue 16): on screen within 1 s of reaching the central; 500 open alerts render under 300 ms; every
notification delivered within 5 s. The screen time is the card's ``data-shown-at`` (set when the card is made)
minus the alert's ``opened_at`` (when the central stored it): both on this machine's clock.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench.figures import Figure
from central.accounts.passwords import hash_password
from central.config import parse_central_config
from central.server import CentralServer
from community.receivers import WebhookReceiver

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PASSWORD = "bench-password-0001"
NODE = "bench-lift-1"


def _event(kind: str, severity: str) -> dict:
    return {"id": str(uuid.uuid4()), "node_id": NODE, "kind": kind, "severity": severity, "state": "raised",
            "priority": "alert", "wall_time": time.time(), "clock_synced": True, "payload": {"seconds_trapped": 95.0},
            "alert_id": str(uuid.uuid4()), "recipients": ["maintenance"], "seq": None}  # fmt: skip


def _central(directory: Path, hooks: WebhookReceiver) -> tuple[CentralServer, str]:
    document = {
        "sites": [{"id": "bench-site", "claim_key": "bench-claim-key-000000001"}],
        "operators": [{"name": "bench", "key": "bench-operator-key-00000001"}],
        "notify": {"tick_s": 0.1, "channels": [{"id": "maint", "type": "webhook", "roles": ["maintenance"],
                                                "url": hooks.url("/hook"), "secret": "bench-secret"}]},
    }  # fmt: skip
    server = CentralServer(parse_central_config(document, directory / "central.toml"), directory / "central.sqlite3")
    server.start()
    server.app.state.console.add_user(
        "bench", "值班员", hash_password(PASSWORD), [{"role": "duty_desk", "sites": ["*"]}], "", time.time()
    )
    reply = requests.post(f"{server.url}/api/v1/nodes/register", timeout=10, json={
        "claim_key": "bench-claim-key-000000001", "node_id": NODE, "role": "elevator", "site": "bench-site",
        "contacts": {"maintenance": [{"name": "维保", "phone": "4008200000"}]}})  # fmt: skip
    return server, reply.json()["token"]


def _post(server: CentralServer, token: str, events: list[dict]) -> None:
    body = {"node_wall_time": time.time(), "events": events}
    requests.post(f"{server.url}/api/v1/events", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _wait(page, expression: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        page.wait_for_timeout(20)


def run(quick: bool = False) -> list[Figure]:
    from playwright.sync_api import sync_playwright

    samples, open_alerts = (5, 100) if quick else (20, 500)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        hooks = WebhookReceiver().start()
        server, token = _central(Path(tmp), hooks)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(server.url + "/")
            page.fill("#username", "bench")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            _wait(page, "document.body.dataset.link === 'up'")
            screen, delivered = [], []
            for i in range(samples):
                _post(server, token, [_event("entrapment", "urgent")])
                _wait(page, f"document.querySelectorAll('#alerts article').length === {i + 1}")
                newest = max(a["opened_at"] for a in requests.get(f"{server.url}/api/v1/alerts", timeout=10,
                             headers={"Authorization": "Bearer bench-operator-key-00000001"}).json()["alerts"])  # fmt: skip
                shown = page.evaluate(
                    "Math.max(...[...document.querySelectorAll('#alerts article')].map(a => Number(a.dataset.shownAt)))"
                )
                screen.append(shown - newest)

                def arrived(got: list[Any], n: int = i + 1) -> bool:
                    return len(got) >= n

                hooks.wait_for(arrived, 10.0)
                delivered.append(hooks.received[i].at - newest)
            _post(server, token, [_event("door_held_open", "warning") for _ in range(open_alerts - samples)])
            page.reload()
            _wait(page, f"document.querySelectorAll('#alerts article').length === {open_alerts}", 60)
            first = float(page.evaluate("document.body.dataset.renderMs"))
            _post(server, token, [_event("power_loss", "urgent")])
            _wait(page, f"document.querySelectorAll('#alerts article').length === {open_alerts + 1}", 30)
            update = float(page.evaluate("document.body.dataset.renderMs"))
        finally:
            browser.close()
            server.stop()
            hooks.stop()
    return [
        Figure("console: urgent alert on screen after the central stored it, median", statistics.median(screen) * 1000, "ms", f"< 1000 ms ({samples} alerts)"),
        Figure("console: urgent alert on screen, worst", max(screen) * 1000, "ms", "< 1000 ms"),
        Figure(f"console: board render with {open_alerts} open alerts (first)", first, "ms", "< 300 ms"),
        Figure(f"console: board update with {open_alerts} open alerts (one more arrives)", update, "ms", "< 300 ms"),
        Figure("notify: webhook received after the central stored the alert, median", statistics.median(delivered) * 1000, "ms", "< 5000 ms"),
        Figure("notify: webhook received, worst", max(delivered) * 1000, "ms", "< 5000 ms"),
    ]  # fmt: skip
