"""The notifier against receivers that misbehave, on loopback: the hostile network of bench/hostile.py (written
for the node's uplink, not for the notifier) in front of a real receiver, a port that accepts and never answers,
a server that drips its status line, a plain-HTTP port named by an https:// URL. None of them passes for a
delivery, every attempt ends within the channel's time limit, and a healthy channel is not held up."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.hostile import Fault, HostileProxy
from community.receivers import WebhookReceiver
from tests.loopback import serving
from tests.test_notify_delivery import CONTACTS, METER, SECRET, eventually, only_alert, raise_silence

TIMEOUT_S = 1.0


@pytest.fixture
def proxy(hooks: WebhookReceiver) -> Iterator[HostileProxy]:
    hostile = HostileProxy(hooks.url(""))
    yield hostile
    hostile.close()


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake, and nobody ever reads or answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def dripping_port(interval_s: float = 0.2) -> Iterator[int]:
    """A server that answers every connection with its status line and headers one byte every ``interval_s``
    (each read is quick, so a per-read timeout never fires)."""

    def drip(conn: socket.socket, stop: threading.Event) -> None:
        with conn, contextlib.suppress(OSError):
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"x" * 10_000:
                if stop.wait(interval_s):
                    return
                conn.sendall(bytes([byte]))

    with serving(drip) as port:
        yield port


def channel(cid: str, ctype: str, role: str, url: str) -> dict:
    return {"id": cid, "type": ctype, "roles": [role], "url": url, "secret": SECRET if ctype != "wecom" else ""}


def section(*channels: dict) -> dict:
    return {"retry_min_s": 0.2, "retry_max_s": 1.0, "timeout_s": TIMEOUT_S, "tick_s": 0.1, "channels": list(channels)}


def delivery(central, cid: str) -> dict:
    """The channel's delivery of the only alert; before the notifier has planned it, one with nothing tried (a check
    polled with ``eventually`` right after the raise must wait for it, not stop on StopIteration)."""
    found = [d for d in only_alert(central)["deliveries"] if d["channel"] == cid]
    return found[0] if found else {"channel": cid, "state": None, "attempt_log": []}


def attempts(central, cid: str, count: int, timeout_s: float = 10.0) -> list[dict]:
    assert eventually(lambda: len(delivery(central, cid)["attempt_log"]) >= count, timeout_s), delivery(central, cid)
    return delivery(central, cid)["attempt_log"]


def test_a_500_a_redirect_or_a_proxy_page_is_never_a_delivery_and_it_is_retried_until_delivered(
    make_central, hooks, proxy
) -> None:
    proxy.script(Fault("reply", status=500, body=b"<html>Internal Server Error</html>"))
    # a login page's redirect: following it would turn the POST into a GET whose 200 passed for a delivery
    proxy.script(Fault("reply", status=302, headers={"Location": hooks.url("/login")}))
    proxy.script(Fault("reply", status=404, body=b"<html><h1>404 Not Found</h1>nginx</html>"))
    central = make_central(notify=section(channel("family-hook", "webhook", "family", proxy.url + "/hook")))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert eventually(lambda: delivery(central, "family-hook")["state"] == "sent", 10.0)
    log = delivery(central, "family-hook")["attempt_log"]
    assert [(a["ok"], a["status"]) for a in log] == [(False, 500), (False, 302), (False, 404), (True, 200)]
    assert "/login" in log[1]["detail"] and "not followed" in log[1]["detail"]
    assert [r.path for r in hooks.received] == ["/hook"]  # the login page was never asked, the hook got it once
    assert only_alert(central)["told"]["family"]["channel"] == "family-hook"


def test_a_robot_answering_a_portal_page_garbage_or_a_flood_is_not_told(make_central, hooks, proxy) -> None:
    portal = b"<html><title>\xe8\xae\xa4\xe8\xaf\x81</title>Please log in to the Wi-Fi</html>"
    proxy.script(Fault("reply", status=200, body=portal, headers={"Content-Type": "text/html"}))
    proxy.script(Fault("reply", status=200, body=b'{"errcode":0', headers={"Content-Type": "application/json"}))
    proxy.script(Fault("huge", size=50 * 1024 * 1024))
    proxy.script(Fault("drip", interval_s=0.05))
    central = make_central(notify=section(channel("desk-wecom", "wecom", "family", proxy.url + "/wecom?key=K")))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert eventually(lambda: delivery(central, "desk-wecom")["state"] == "sent", 15.0)
    log = delivery(central, "desk-wecom")["attempt_log"]
    assert [a["ok"] for a in log] == [False, False, False, False, True], log
    assert all("not a robot's JSON" in a["detail"] for a in log[:3]), log
    assert "DeadlineExceeded" in log[3]["detail"] or "not a robot's JSON" in log[3]["detail"], log[3]
    # the 50 MB answer is cut at 64 KB, the 10 kB drip at the time limit: no attempt outlasts it
    assert max(a["took_ms"] for a in log) <= TIMEOUT_S * 1000 + 500, log
    assert [r.path for r in hooks.received] == ["/wecom?key=K"]


def test_silent_dripping_and_tls_less_receivers_end_in_time_and_hold_nobody_up(make_central, hooks) -> None:
    with silent_port() as silent, dripping_port() as dripping:
        central = make_central(
            notify=section(
                channel("family-silent", "webhook", "family", f"http://127.0.0.1:{silent}/hook"),
                channel("family-drip", "webhook", "family", f"http://127.0.0.1:{dripping}/hook"),
                channel("family-tls", "sms", "family", hooks.url("/sms").replace("http://", "https://")),
                channel("family-ok", "webhook", "family", hooks.url("/hook")),
            )
        )
        token = central.register(METER, "meter", contacts=CONTACTS)
        posted = time.time()
        raise_silence(central, token, severity="warning")
        assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
        healthy_s = time.time() - posted
        silent_log = attempts(central, "family-silent", 2)
        drip_log = attempts(central, "family-drip", 2)
        tls_log = attempts(central, "family-tls", 2)
    # the read timeout and the attempt's deadline are both the channel's time limit: either one ends it
    assert any(w in silent_log[0]["detail"] for w in ("ReadTimeout", "DeadlineExceeded")), silent_log
    assert "DeadlineExceeded" in drip_log[0]["detail"], drip_log  # each byte came well within the read timeout
    assert tls_log[0]["detail"].startswith("SSLError: [SSL: WRONG_VERSION_NUMBER]"), tls_log
    for log in (silent_log, drip_log, tls_log):
        assert not any(a["ok"] for a in log)
        assert max(a["took_ms"] for a in log) <= TIMEOUT_S * 1000 + 500, log
    assert delivery(central, "family-ok")["state"] == "sent"
    assert [r.path for r in hooks.received] == ["/hook"]  # the TLS handshake never reached the receiver's handler
    print(f"healthy channel delivered {healthy_s:.2f} s after the event, beside three hostile ones")
