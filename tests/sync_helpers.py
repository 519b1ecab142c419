"""A small scripted central on 127.0.0.1 for sync tests: answers like the v1 contract, or as a test scripts it
(500, 429 + Retry-After, garbage JSON, a slow reply, 401, a whole-batch 422), and records what it received."""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common.config import AudioSection, CentralSection, GpioSection, NodeConfig, NodeSection, OutboxSection


@dataclass
class Reply:
    """One scripted answer: status, body (dict -> JSON, bytes as is), headers, delay before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeCentral:
    """Accepts events with the right token (idempotent by id), rejects per event any kind in
    ``reject_kinds``, refuses a whole batch with 422 when it holds a kind in ``poison_kinds``."""

    def __init__(self, token: str = "node-token") -> None:
        self.token = token
        self.events: dict[str, dict] = {}
        self.receipts: Counter[str] = Counter()
        self.heartbeats: list[dict] = []
        self.requests: list[tuple[str, int, int]] = []  # (path, status, events in body)
        self.script: deque[Reply] = deque()
        self.reject_kinds: set[str] = set()
        self.poison_kinds: set[str] = set()
        self.order: list[str] = []  # event ids in arrival order (first arrival)
        self.wall_times: list[float] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        central = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                status, body, headers, delay, n = central._answer(self.path, self.headers.get("Authorization"), raw)
                if delay:
                    central._released.wait(delay)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                with central._lock:
                    central.requests.append((self.path, status, n))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCentral:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def then(self, *replies: Reply) -> None:
        """Answer the next POST /events with these replies, in order, before the default behaviour."""
        with self._lock:
            self.script.extend(replies)

    def event_posts(self) -> list[tuple[str, int, int]]:
        with self._lock:
            return [r for r in self.requests if r[0].endswith("/events")]

    def _answer(self, path: str, auth: str | None, raw: bytes) -> tuple[int, bytes, dict[str, str], float, int]:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        n = len(data.get("events", [])) if isinstance(data, dict) else 0
        if path.endswith("/events"):
            with self._lock:
                scripted = self.script.popleft() if self.script else None
            if scripted is not None:
                body = scripted.body
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode()
                return scripted.status, body or b"", scripted.headers, scripted.delay_s, n
        if auth != f"Bearer {self.token}":
            return 401, b'{"error":"unauthorized"}', {"WWW-Authenticate": "Bearer"}, 0.0, n
        if not isinstance(data, dict):
            return 422, b'{"error":"invalid","message":"body: not JSON"}', {}, 0.0, n
        if path.endswith("/heartbeat"):
            with self._lock:
                self.heartbeats.append(data)
            return 200, b'{"ok":true}', {}, 0.0, n
        if not path.endswith("/events"):
            return 404, b"{}", {}, 0.0, n
        events = data.get("events")
        if not isinstance(events, list) or not isinstance(data.get("node_wall_time"), float | int):
            return 422, b'{"error":"invalid","message":"node_wall_time or events missing"}', {}, 0.0, n
        if any(e.get("kind") in self.poison_kinds for e in events):
            body = json.dumps({"error": "invalid", "message": "events: invalid event", "fields": ["events"]})
            return 422, body.encode(), {}, 0.0, n
        accepted, rejected = [], []
        with self._lock:
            self.wall_times.append(data["node_wall_time"])
            for event in events:
                if event.get("kind") in self.reject_kinds:
                    rejected.append({"id": event["id"], "reason": "kind not allowed"})
                    continue
                self.receipts[event["id"]] += 1
                if event["id"] not in self.events:
                    self.events[event["id"]] = event
                    self.order.append(event["id"])
                accepted.append(event["id"])
        return 200, json.dumps({"accepted": accepted, "rejected": rejected}).encode(), {}, 0.0, n


@contextmanager
def fake_central(token: str = "node-token") -> Iterator[FakeCentral]:
    central = FakeCentral(token).start()
    try:
        yield central
    finally:
        central.stop()


def node_config(
    tmp: Path,
    url: str,
    token: str | None = "node-token",
    *,
    node_id: str = "test-node-1",
    role: str = "meter",
    central: dict[str, Any] | None = None,
    outbox: dict[str, Any] | None = None,
) -> NodeConfig:
    """A NodeConfig with data under ``tmp`` and a token file (mode 0600) unless ``token`` is None."""
    tmp.mkdir(parents=True, exist_ok=True)
    token_file = tmp / "token"
    if token is not None:
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
    central_section = {"url": url, "token_file": str(token_file), "connect_timeout_s": 1.0, "read_timeout_s": 2.0}
    central_section.update(central or {})
    config = NodeConfig(
        path=tmp / "node.toml",
        node=NodeSection(id=node_id, role=role, site="test-site", data_dir=tmp / "data"),  # type: ignore[arg-type]
        central=CentralSection(**_paths(central_section)),
        outbox=OutboxSection(**(outbox or {})),
        gpio=GpioSection(),
        audio=AudioSection(),
        role_config=None,
    )
    return config


def _paths(section: dict[str, Any]) -> dict[str, Any]:
    out = dict(section)
    for key in ("token_file", "ca_bundle"):
        if isinstance(out.get(key), str):
            out[key] = Path(out[key])
    return out


def run_until(step: Callable[[], Any], done: Callable[[], bool], limit: int = 1000) -> int:
    """Call ``step`` until ``done()``; returns the number of steps; fails after ``limit``."""
    for n in range(limit):
        if done():
            return n
        step()
    raise AssertionError(f"not done after {limit} steps")
