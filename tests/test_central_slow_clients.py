"""Central fault suite, slow and hostile clients (issue 12 Medium 5): half-open connections, a request head or
body dripping in, bodies held unfinished. The central keeps answering /health and nodes, sheds the slow
clients, and every event it acknowledged is stored once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import eventually
from tests.fixtures.central import wire_event

ROOT = Path(__file__).resolve().parent.parent

LIFT = "cbxc-b7-u2-lift1"
LIMITS = {"header_timeout_s": 1.0, "body_timeout_s": 1.0, "max_connections": 50, "max_buffered_bytes": 1_048_576}


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect(central, opened: list[socket.socket], first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", central.port), timeout=5)
    opened.append(sock)
    if first:
        sock.sendall(first)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the connection (whatever it answered before)."""
    sock.settimeout(0.05)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def answer_of(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_half_open_connections_cannot_take_health_or_uploads_down(make_central, sockets):
    central = make_central(server=LIMITS)
    token = central.register(LIFT)
    # four times the connection cap, each sending nothing or half a request head, and held open
    for i in range(200):
        connect(central, sockets, b"" if i % 2 else b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
    accepted: list[str] = []
    for seq in range(1, 21):
        health = requests.get(f"{central.url}/api/v1/health", timeout=3)
        assert health.status_code == 200
        event = wire_event(LIFT, seq)
        answer = central.post_events(token, [event])
        assert answer.status_code == 200
        accepted += answer.json()["accepted"]
    assert [e["id"] for e in central.events()] == accepted and len(accepted) == 20
    # the held connections were shed: evicted for newer ones, or closed once their head was late
    eventually(lambda: all(closed_by_server(s) for s in sockets), timeout_s=15)


def test_a_request_head_dripping_in_is_cut_off(make_central, sockets):
    central = make_central(server=LIMITS)
    sock = connect(central, sockets)
    started = time.monotonic()
    for byte in b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n":
        try:
            sock.send(bytes([byte]))
        except OSError:
            break
        if closed_by_server(sock):
            break
        time.sleep(0.1)  # pacing the drip itself, not waiting for a result
    eventually(lambda: closed_by_server(sock), timeout_s=10)
    assert time.monotonic() - started < 5  # 1 s header timeout, not the 4 s the whole drip takes


def test_half_a_request_head_gets_408_with_the_typed_body(make_central, sockets):
    central = make_central(server=LIMITS)
    sock = connect(central, sockets, b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\n")
    answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer
    assert b'"schema": "changbai-error/1"' in answer or b'"schema":"changbai-error/1"' in answer


def test_a_body_that_stops_arriving_gets_408_and_the_central_stays_up(make_central, sockets):
    central = make_central(server=LIMITS)
    token = central.register(LIFT)
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 5000\r\n\r\n"
    )
    sock = connect(central, sockets, head.encode() + b'{"node_wall_time": 1, "events": [')
    answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b'"schema":"changbai-error/1"' in answer.replace(b" ", b"")
    assert b'"request_timeout"' in answer
    assert requests.get(f"{central.url}/api/v1/health", timeout=3).status_code == 200
    assert central.events() == []


def test_unfinished_bodies_are_bounded_in_memory_with_503(make_central, sockets):
    central = make_central(server={**LIMITS, "body_timeout_s": 30.0, "max_body_bytes": 600_000})
    token = central.register(LIFT)
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 590000\r\n\r\n"
    )
    held = [connect(central, sockets, head.encode() + b" " * 400_000) for _ in range(2)]
    budget = central._server.app.state.memory_budget
    eventually(lambda: budget.held >= 800_000)
    # a node sending its whole batch while those two are held: refused, not stored, told when to come back
    third = connect(central, sockets, head.encode() + b" " * 590_000)
    answer = answer_of(third)
    assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in answer.lower()
    assert b'"overloaded"' in answer
    assert budget.peak <= budget.limit
    for sock in held:
        sock.close()
    eventually(lambda: budget.held == 0)
    event = wire_event(LIFT, 1)
    assert central.post_events(token, [event]).json()["accepted"] == [event["id"]]


@pytest.mark.parametrize(("open_files", "cap", "backlog"), [(20_000, 1000, 1024), (1024, 720, 240), (300, 108, 128)])
def test_the_listen_queue_holds_a_thousand_nodes_connecting_at_once_when_descriptors_allow(
    open_files: int, cap: int, backlog: int
) -> None:
    """A queue of 128 overflowed when 1,000 nodes connected at once (the kernel's ListenOverflows rose, uploads got
    connection resets); the queue is now 1,024, smaller only where the open-file limit is small. Run in a child
    process whose open-file limit is set first (a limit once lowered cannot be raised back)."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])));"
        "from central.guard import raise_fd_limit; print(*raise_fd_limit(1000))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(open_files)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(cap), str(backlog)]
