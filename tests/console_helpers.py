"""Helpers for the console tests: people added with the real `central user add`, alerts posted as nodes send them."""

from __future__ import annotations

import io
import uuid

import pytest

from central.__main__ import main as central_main
from tests.fixtures.central import wire_event

PASSWORD = "correct horse battery 7"
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
