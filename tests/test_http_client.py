"""The one HTTP client (common/http.py) on a loopback server: what its users rely on besides the uploader's
deadline and size limit (tests/test_faults_network.py): a cut reply, a status-only reply, JSON both ways, no
redirect followed, a streamed body, and failures that name their innermost cause."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.http import HttpClient, HttpFailure

BIG = 200_000


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/endless":  # a 200 whose body never ends
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                return
        body = b"y" * BIG
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"echo": sent, "type": self.headers["Content-Type"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    made = HttpClient(connect_timeout_s=2, read_timeout_s=5, total_timeout_s=10, max_reply_bytes=1000)
    yield made
    made.close()


def test_a_reply_over_the_limit_fails_or_is_cut(server: str, client: HttpClient) -> None:
    with pytest.raises(HttpFailure) as caught:
        client.request("GET", server + "/big")
    assert caught.value.kind == "too_large" and caught.value.name == "ReplyTooLarge"
    reply = client.request("GET", server + "/big", cut=True)
    assert reply.status == 200 and reply.cut and reply.body == b"y" * 1000
    with pytest.raises(ValueError):
        reply.json()  # a cut body is never parsed as if it were whole


def test_status_only_reads_no_body_even_an_endless_one(server: str, client: HttpClient) -> None:
    started = time.monotonic()
    reply = client.request("GET", server + "/endless", read_body=False)
    assert reply.status == 200 and reply.body == b"" and not reply.cut
    assert time.monotonic() - started < 5


def test_json_both_ways_and_no_redirect_followed(server: str, client: HttpClient) -> None:
    reply = client.request_json("POST", server + "/echo", {"名": "长白新村", "n": 1})
    assert reply.json() == {"echo": {"名": "长白新村", "n": 1}, "type": "application/json"}
    moved = client.request("GET", server + "/redirect")
    assert moved.status == 302 and moved.headers["location"] == "/elsewhere"


def test_a_streamed_body_is_the_callers_to_read(server: str, client: HttpClient) -> None:
    with client.stream(server + "/big") as answer:
        assert answer.status_code == 200
        assert sum(len(c) for c in answer.iter_content(8192)) == BIG  # no size limit: the caller bounds it


def test_a_failure_names_its_innermost_cause(client: HttpClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once it is closed
    with pytest.raises(HttpFailure) as caught:
        client.request("GET", f"http://127.0.0.1:{closed_port}/")
    failure = caught.value
    assert failure.kind == "connection" and failure.name == "ConnectionError"
    assert "Connection refused" in failure.reason and "Max retries" not in failure.text
    with pytest.raises(HttpFailure) as caught:
        client.request("GET", "no-scheme")
    assert caught.value.kind == "invalid_url"
