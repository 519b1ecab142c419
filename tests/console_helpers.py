"""Helpers for the console tests: people added with the real `central user add`, alerts posted as nodes send them,
and the pages held against axe-core (Deque's accessibility engine, the copy that axe-playwright-python ships)."""

from __future__ import annotations

import io
import os
import time
import uuid
from pathlib import Path

import pytest

from central.__main__ import main as central_main
from tests.fixtures.central import wire_event

PASSWORD = "correct horse battery 7"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def add_user(central, username: str, *roles: str, name: str = "", monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["user", "add", username, "--db", str(central.database), "--name", name or username, "--password-stdin"]
    for role in roles:
        argv += ["--role", role]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert central_main(argv) == 0


def alert_event(
    node: str, kind: str, severity: str = "urgent", alert_id: str | None = None, recipients=("family",), **payload
) -> dict:
    return wire_event(node, kind=kind, severity=severity, state="raised", priority="alert",
                      alert_id=alert_id or str(uuid.uuid4()), recipients=list(recipients), payload=payload)  # fmt: skip


def login(browser, central, username: str, width: int = 1366, height: int = 768, on_page=None):
    """A duty desk logged in to the console in ``browser`` (tests/fixtures/browser.py); ``on_page(page)`` runs
    before the console loads (to route its requests)."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    page = context.new_page()
    if on_page:
        on_page(page)
    page.goto(central.url + "/")
    page.wait_for_selector("#username")
    assert axe_violations(page) == []  # the login form
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#board-summary")
    return page


def shot(page, name: str) -> None:
    """With CONSOLE_SCREENSHOTS=DIR set, keep the page as DIR/console-NAME.png (docs/img's are made so)."""
    if os.environ.get("CONSOLE_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["CONSOLE_SCREENSHOTS"]) / f"console-{name}.png"), full_page=False)


def wait_js(page, expression: str, timeout_s: float = 10.0) -> None:
    """Wait until the page's ``expression`` is true (polled from outside: the page's policy forbids eval)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {expression}"
        page.wait_for_timeout(50)


def axe_violations(page) -> list[str]:
    """What axe-core finds against WCAG 2.1 A and AA on the page as it is now: contrast (4.5:1 for text), labels,
    names of buttons and links, the page's language, ...; one line per rule with its first elements."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}, "resultTypes": ["violations"]})
    return [
        f"{v['id']}: {v['help']} ({', '.join(' '.join(n['target']) for n in v['nodes'][:3])})"
        for v in found.response["violations"]
    ]
