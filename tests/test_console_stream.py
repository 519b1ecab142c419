"""The console's live feed (GET /api/v1/stream): server-sent events read by a plain HTTP client."""

from __future__ import annotations

import json
import queue
import threading

import pytest
import requests

from tests.console_helpers import PASSWORD, add_user, alert_event

pytestmark = pytest.mark.both_engines  # the same cases on SQLite and PostgreSQL


def listen(central, session: requests.Session, headers: dict | None = None) -> queue.Queue:
    """Read the stream in a thread; each parsed event ``(id, name, data)`` goes into the queue."""
    events: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            _read()
        except requests.RequestException:
            pass  # the central stopped at the end of the test

    def _read() -> None:
        with session.get(f"{central.url}/api/v1/stream", stream=True, timeout=30, headers=headers or {}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            for line in r.iter_lines(decode_unicode=True):
                if line:
                    key, _, value = line.partition(": ")
                    fields[key] = value
                elif "event" in fields:
                    events.put((fields.get("id"), fields["event"], json.loads(fields["data"])))
                    fields = {}

    threading.Thread(target=read, daemon=True).start()
    return events


def next_named(events: queue.Queue, name: str, timeout_s: float = 10.0):
    while True:
        item = events.get(timeout=timeout_s)
        if item[1] == name:
            return item


def test_the_feed_pushes_changed_alerts_to_those_who_handle_them_and_resumes(central, monkeypatch) -> None:
    add_user(central, "wang", "social_worker", name="王社工", monkeypatch=monkeypatch)
    wang = requests.Session()
    wang.post(f"{central.url}/api/v1/session", json={"username": "wang", "password": PASSWORD}, timeout=10)
    key = requests.Session()
    key.headers.update(central.operator_headers)
    lift = central.register("cbxc-b7-u2-lift1", "elevator")
    meter = central.register("cbxc-b12-meters", "meter")
    as_key, as_wang = listen(central, key), listen(central, wang)
    hello = next_named(as_key, "hello")
    assert next_named(as_wang, "hello")[2]["who"]["name"] == "王社工"
    central.post_events(lift, [alert_event("cbxc-b7-u2-lift1", "entrapment")])
    central.post_events(meter, [alert_event("cbxc-b12-meters", "inactivity", resident="B12-301")])
    kinds: set[str] = set()
    while len(kinds) < 2:
        kinds |= {a["kind"] for a in next_named(as_key, "alerts")[2]["alerts"]}
    assert kinds == {"entrapment", "inactivity"}
    seen = next_named(as_wang, "alerts")[2]["alerts"]
    assert [a["kind"] for a in seen] == ["inactivity"] and seen[0]["title_zh"] == "长时间未用水"
    # a console that lost its connection asks again from its last cursor and gets what it missed
    resumed = listen(central, key, headers={"Last-Event-ID": hello[0]})
    replay = {a["kind"] for a in next_named(resumed, "alerts")[2]["alerts"]}
    assert replay == {"entrapment", "inactivity"}


def test_the_feed_needs_a_login(central) -> None:
    r = requests.get(f"{central.url}/api/v1/stream", timeout=10)
    assert r.status_code == 401 and r.json()["schema"] == "changbai-error/1"
