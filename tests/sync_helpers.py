"""A small scripted central on 127.0.0.1 for sync tests: answers like the v1 contract (typed refusal bodies,
per-event rejection codes), or as a test scripts it (500, 429 + Retry-After, garbage JSON, a slow reply, 401,
a whole-batch 422), and records what it received."""

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

from common.config import (
    AudioSection,
    CentralSection,
    GpioSection,
    NodeConfig,
    NodeSection,
    OutboxSection,
    Role,
)


@dataclass
class Reply:
    """One scripted answer: status, body (dict -> JSON, bytes as is), headers, delay before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


ERROR_SCHEMA = "changbai-error/1"


def refusal(code: str, message: str = "", fields: list[str] | None = None) -> dict[str, Any]:
    """Our central's typed refusal body (docs/api.md, the error contract)."""
    return {"schema": ERROR_SCHEMA, "error": code, "message": message or code, "fields": fields or []}


def _json_reply(
    status: int, body: dict[str, Any], n: int, **headers: str
) -> tuple[int, bytes, dict[str, str], float, int]:
    return status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}, 0.0, n


class FakeCentral:
    """Accepts events with the right token (idempotent by id), rejects per event any kind in
    ``reject_kinds`` (code ``invalid_event``) or ``retry_kinds`` (code ``try_later``, not final), refuses a
    whole batch with our 422 ``invalid_body`` when it holds a kind in ``poison_kinds``."""

    def __init__(self, token: str = "node-token", node_id: str | None = None) -> None:
        self.token = token
        self.node_id = node_id  # the node this token belongs to; None: any node id is taken
        self.events: dict[str, dict] = {}
        self.receipts: Counter[str] = Counter()
        self.heartbeats: list[dict] = []
        self.requests: list[tuple[str, int, int]] = []  # (path, status, events in body)
        self.script: deque[Reply] = deque()
        self.reject_kinds: set[str] = set()
        self.retry_kinds: set[str] = set()
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
        return f"http://{host!s}:{port}"

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
                body, headers = scripted.body, dict(scripted.headers)
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                return scripted.status, body or b"", headers, scripted.delay_s, n
        if auth != f"Bearer {self.token}":
            return _json_reply(401, refusal("unauthorized"), n, **{"WWW-Authenticate": "Bearer"})
        if not isinstance(data, dict):
            return _json_reply(422, refusal("invalid_body", "body: not JSON"), n)
        if path.endswith("/heartbeat"):
            with self._lock:
                self.heartbeats.append(data)
            return _json_reply(200, {"ok": True}, n)
        if not path.endswith("/events"):
            return _json_reply(404, refusal("not_found"), n)
        events = data.get("events")
        if not isinstance(events, list) or not isinstance(data.get("node_wall_time"), float | int):
            return _json_reply(422, refusal("invalid_body", "node_wall_time or events missing"), n)
        if any(e.get("kind") in self.poison_kinds for e in events):
            return _json_reply(422, refusal("invalid_body", "events: invalid", ["events"]), n)
        accepted, rejected = [], []
        with self._lock:
            self.wall_times.append(data["node_wall_time"])
            for index, event in enumerate(events):
                code = self._rejection_code(event)
                if code is not None:
                    reason = {"foreign_event": "another node's event", "invalid_event": "kind not allowed"}.get(
                        code, "busy"
                    )
                    rejected.append({"id": event["id"], "index": index, "code": code, "reason": reason})
                    continue
                self.receipts[event["id"]] += 1
                if event["id"] not in self.events:
                    self.events[event["id"]] = event
                    self.order.append(event["id"])
                accepted.append(event["id"])
        return _json_reply(200, {"accepted": accepted, "rejected": rejected}, n)

    def _rejection_code(self, event: dict[str, Any]) -> str | None:
        if self.node_id is not None and event.get("node_id") != self.node_id:
            return "foreign_event"
        if event.get("kind") in self.reject_kinds:
            return "invalid_event"
        return "try_later" if event.get("kind") in self.retry_kinds else None


@contextmanager
def fake_central(token: str = "node-token", node_id: str | None = None) -> Iterator[FakeCentral]:
    central = FakeCentral(token, node_id).start()
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
    role: Role = "meter",
    site: str = "test-site",
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
        node=NodeSection(id=node_id, role=role, site=site, data_dir=tmp / "data"),
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
