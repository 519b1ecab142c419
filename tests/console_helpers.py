"""Helpers for the console tests: people added with the real `central user add`, alerts posted as nodes send them,
and the pages held against axe-core (Deque's accessibility engine, the copy that axe-playwright-python ships)."""

from __future__ import annotations

import io
import uuid

import pytest

from central.__main__ import main as central_main
from tests.fixtures.central import wire_event

PASSWORD = "correct horse battery 7"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BROWSER_FLAGS = [  # REFERENCE.md: Debian's chromium, never a browser download
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


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


def axe_violations(page) -> list[str]:
    """What axe-core finds against WCAG 2.1 A and AA on the page as it is now: contrast (4.5:1 for text), labels,
    names of buttons and links, the page's language, ...; one line per rule with its first elements."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}, "resultTypes": ["violations"]})
    return [
        f"{v['id']}: {v['help']} ({', '.join(' '.join(n['target']) for n in v['nodes'][:3])})"
        for v in found.response["violations"]
    ]
