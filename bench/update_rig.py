"""A node managed by the updater in a temporary root, for the update tests and the updates benchmarks.

``ManagedNode(directory, central_url, token, public_key)`` writes a lift node's config (mock GPIO pins, no
audio) whose [update] root is ``directory/opt`` and whose restart command asks ``NodeSupervisor`` to restart
the node, as systemd's Restart=always does: the supervisor runs ``ROOT/current/venv/bin/elevator-node`` and,
before each start, ``ROOT/committed/venv/bin/changbai-update recover`` (the unit's ExecStartPre).

Release variants used by the tests and the bench (``RELEASES``): a second version whose config schema 2 adds
a key (so version 1 cannot read a migrated config), a release whose migration makes the config invalid, one
whose self-test fails (a module raises on import), one that passes its self-test but exits at start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.release_variant import derive_bundle
from common.files import write_atomic
from updates.build import Builder, copy_source
from updates.manifest import generate_key, local_target, private_key_pem, public_key_pem

SCHEMA_2 = """
@dataclass(frozen=True, kw_only=True)
class UpdateSection(UpdateSection):  # noqa: F811 - schema 2 of the test release adds a key
    note: str = setting("", help="added in config schema 2")


CONFIG_SCHEMA_VERSION = 2
"""
MIGRATION_2 = """
def _add_note(doc):
    doc.setdefault("update", {})["note"] = "migrated to schema 2"
    return doc


MIGRATIONS[1] = Migration("[update] note added", _add_note)
"""
BAD_MIGRATION = """
def _bad(doc):
    doc.setdefault("update", {})["health_timeout_s"] = 1.0
    return doc


MIGRATIONS[1] = Migration("[update] health_timeout_s set below its minimum", _bad)
"""
RELEASES = {
    "good": {},
    "schema2": {"common/config.py": SCHEMA_2, "updates/migrations.py": MIGRATION_2},
    "bad_config": {"common/config.py": "CONFIG_SCHEMA_VERSION = 2", "updates/migrations.py": BAD_MIGRATION},
    "bad_selftest": {"elevator_node/detector.py": 'raise ImportError("a module of this release is broken")'},
    "dies_at_start": {"elevator_node/__main__.py": "def main(argv=None):\n    raise SystemExit(1)"},
}

ELEVATOR = """
[elevator]
building = "7"
unit = "2"
lift = "1"
door = { pin = 17, active_high = false, pull_up = true }
occupancy = { pin = 27 }
"""


PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class ReleaseKit:
    root: Path
    private_key: Ed25519PrivateKey
    key_path: Path
    public_key: Path
    target: str = field(default_factory=local_target)
    _built: dict[tuple, Path] = field(default_factory=dict)

    @classmethod
    def new(cls, root: Path) -> ReleaseKit:
        """A fresh release key pair in ``root`` (unencrypted: tests and benchmarks only)."""
        key = generate_key()
        write_atomic(root / "release.key", private_key_pem(key, None))
        write_atomic(root / "release.pub", public_key_pem(key.public_key()), mode=0o644)
        return cls(root, key, root / "release.key", root / "release.pub")

    def bundle(self, version: str, role: str = "elevator", append: dict[str, str] | None = None) -> Path:
        """A signed bundle of this project (with ``append`` applied) at ``version``; cached per arguments. The
        first one of a role is built by ``changbai-release build``; the others are derived from it (the same
        dependency wheels, the suite's wheel rewritten: bench/release_variant.py)."""
        cache_key = (version, role, tuple(sorted((append or {}).items())))
        if cache_key in self._built:
            return self._built[cache_key]
        base = next((path for (_, r, changes), path in self._built.items() if r == role and not changes), None)
        if base is not None:
            out = self.root / f"out-{len(self._built)}"
            self._built[cache_key] = derive_bundle(base, self.private_key, out, version, append)
            return self._built[cache_key]
        if append:  # the plain release first, the variant from it
            self.bundle(f"{version}.base", role)
            return self.bundle(version, role, append)
        with tempfile.TemporaryDirectory(prefix="tree-", dir=self.root) as tmp:
            tree = Path(tmp) / "src"
            copy_source(PROJECT, tree, version)
            for relative, text in (append or {}).items():
                with open(tree / relative, "a", encoding="utf-8") as handle:
                    handle.write("\n" + text + "\n")
            out = self.root / f"out-{len(self._built)}"
            result = Builder(
                source=tree, role=role, target=self.target, key=self.private_key, out_dir=out, version=version
            ).run()
        self._built[cache_key] = result.bundle
        return result.bundle


class ManagedNode:
    """The files of one updater-managed lift node under ``directory``."""

    def __init__(
        self, directory: Path, central_url: str, token: str, public_key: Path, node_id: str, health_timeout_s: float
    ) -> None:
        self.dir = Path(directory)
        self.root = self.dir / "opt"
        self.config = self.dir / "etc" / "node.toml"
        self.pidfile = self.dir / "node.pid"
        self.node_id = node_id
        token_file = self.dir / "etc" / "token"
        write_atomic(token_file, token)
        restart = ["/bin/sh", "-c", f'kill -TERM "$(cat {self.pidfile})" 2>/dev/null; exit 0']
        text = f"""
[node]
id = "{node_id}"
role = "elevator"
site = "changbai-xincun"
data_dir = "{self.dir / "var"}"

[central]
url = "{central_url}"
token_file = "{token_file}"
heartbeat_interval_s = 10

[gpio]
pin_factory = "mock"

[audio]
backend = "none"

[update]
root = "{self.root}"
public_key = "{public_key}"
health_timeout_s = {health_timeout_s}
restart_command = {_toml_list(restart)}
{ELEVATOR}"""
        write_atomic(self.config, text, mode=0o640)
        self.original_config = self.config.read_bytes()

    def updater(self, *args: str, link: str = "committed", timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ROOT/LINK/venv/bin/changbai-update (the node's own updater) with this config."""
        exe = self.root / link / "venv" / "bin" / "changbai-update"
        return subprocess.run(
            [str(exe), "--config", str(self.config), *args], capture_output=True, text=True, timeout=timeout
        )

    def first_install(self, bundle: Path) -> subprocess.CompletedProcess:
        """What a technician does on a new node: changbai-update now --bundle FILE from this test's venv."""
        cmd = [sys.executable, "-m", "updates.node_cli", "--config", str(self.config), "now", "--bundle", str(bundle)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


class NodeSupervisor:
    """Keeps ROOT/current's node running like systemd's Restart=always (a thread of the test process)."""

    def __init__(self, node: ManagedNode, restart_s: float = 0.3) -> None:
        self.node = node
        self.restart_s = restart_s
        self.starts = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self.log = node.dir / "node.log"

    def __enter__(self) -> NodeSupervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def running(self) -> bool:
        """The node process started last is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            self._stop.wait(0.1 if self._proc and self._proc.poll() is None else self.restart_s)

    def _start(self) -> None:
        root = self.node.root
        recover = root / "committed" / "venv" / "bin" / "changbai-update"
        if recover.exists():  # ExecStartPre=-+.../changbai-update recover
            subprocess.run(
                [str(recover), "--config", str(self.node.config), "recover"], capture_output=True, timeout=60
            )
        program = root / "current" / "venv" / "bin" / "elevator-node"
        if not program.exists():
            return
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [str(program), "run", "--config", str(self.node.config)], stdout=log, stderr=log, env=env
            )
        write_atomic(self.node.pidfile, str(self._proc.pid))
        self.starts += 1


def wait_for(condition, timeout: float, what: str, step: float = 0.1):
    """Poll ``condition()`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "]"


class _LoopbackProxy:
    """A listening loopback port whose every connection is served by ``_serve`` on its own thread; ``.url``
    replaces the central's URL."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class CuttingProxy(_LoopbackProxy):
    """A loopback TCP proxy to the central that cuts the first ``cuts`` connections whose first request is a
    file download after ``after_bytes`` of the answer (a network that drops mid-download). ``.url`` replaces the
    central's URL; other traffic passes both ways untouched."""

    def __init__(self, upstream_port: int, after_bytes: int, cuts: int = 1) -> None:
        self.upstream_port, self.after_bytes, self.cuts_left = upstream_port, after_bytes, cuts
        self.cut = 0
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        armed = threading.Event()  # the answer now flowing back is a file to cut
        threading.Thread(target=self._requests, args=(client, upstream, armed), daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if armed.is_set() and sent + len(data) > self.after_bytes:
                    client.sendall(data[: self.after_bytes - sent])
                    self.cut += 1
                    break
                client.sendall(data)
                sent = sent + len(data) if armed.is_set() else 0
        except OSError:
            pass
        _close(client, upstream)

    def _requests(self, client: socket.socket, upstream: socket.socket, armed: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                request_line = data.split(b"\r\n", 1)[0]
                if request_line.startswith(b"GET ") and b"/files/" in request_line and self.cuts_left > 0:
                    self.cuts_left -= 1
                    armed.set()
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


PROXY_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    b"<hr><center>nginx</center></body></html>"
)


FILE_FAULTS = ("html", "drip", "huge", "garbage", "portal")


class FileFaultProxy(_LoopbackProxy):
    """A loopback HTTP proxy to the central that answers the update traffic as a hostile network would and
    forwards the rest (each forwarded request with ``Connection: close``, so every request passes through here).
    ``fault`` for the next ``count`` file downloads: ``html`` (a proxy's 200 error page, text/html), ``drip`` (a
    200 whose bytes come one every 50 ms), ``huge`` (a 200 of 300 MB of zeros), ``garbage`` (a 200 of 4 KiB that
    is not the file); ``portal`` answers every request with the error page; ``tamper`` changes the first file's sha256 in the manifest of the next update offer (its
    signature kept); ``before_file`` is called before a file download is forwarded (a disk that fills then)."""

    def __init__(self, upstream_port: int, fault: str = "", count: int = 1, before_file=None) -> None:
        self.upstream_port, self.fault, self.left, self.before_file = upstream_port, fault, count, before_file
        self.served: list[str] = []
        self.sent = 0
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head and (data := client.recv(65536)):
                head += data
            path = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else ""
            portal = self.fault == "portal"  # a captive portal: its page for every request
            if (portal or "/files/" in path) and self.fault in FILE_FAULTS and self.left > 0:
                self.left -= 1
                self.served.append(self.fault)
                self._answer(client, "html" if portal else self.fault)
                return
            if "/files/" in path and self.before_file is not None:
                self.before_file()
            tamper = "/updates/check" in path and self.fault == "tamper" and self.left > 0
            self._forward(client, head, tamper)
        except OSError:
            pass
        finally:
            _close(client)

    def _answer(self, client: socket.socket, fault: str) -> None:
        kind, length = {
            "html": ("text/html", len(PROXY_ERROR_PAGE)),
            "drip": ("application/octet-stream", 10_000_000),
            "huge": ("application/octet-stream", 300 * 1024 * 1024),
            "garbage": ("application/octet-stream", 4096),
        }[fault]
        client.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {length}\r\n\r\n".encode())
        if fault == "html":
            client.sendall(PROXY_ERROR_PAGE)
        elif fault == "drip":
            for _ in range(length):
                client.sendall(b"\0")
                time.sleep(0.05)
        elif fault == "huge":
            chunk = b"\0" * (1024 * 1024)
            for _ in range(length // len(chunk)):
                client.sendall(chunk)
                self.sent += len(chunk)  # how much the node took before it hung up
        else:
            client.sendall(os.urandom(length))

    def _forward(self, client: socket.socket, head: bytes, tamper: bool) -> None:
        top, _, rest = head.partition(b"\r\n\r\n")
        lines = [line for line in top.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        try:
            upstream.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + rest)
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            answer = b""
            while data := upstream.recv(65536):
                if not tamper:
                    client.sendall(data)
                answer += data if tamper else b""
            if tamper:
                self.left -= 1
                self.served.append("tamper")
                client.sendall(_tampered(answer))
        finally:
            _close(upstream)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass


def _tampered(answer: bytes) -> bytes:
    """The central's update offer with the first file's sha256 in its manifest changed (signature kept)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    offer = json.loads(body)
    if offer.get("update"):
        manifest = json.loads(offer["update"]["manifest"])
        manifest["files"][0]["sha256"] = "0" * 64
        offer["update"]["manifest"] = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    data = json.dumps(offer).encode()
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"content-length", b"transfer-enc"))]
    return b"\r\n".join([*lines, f"Content-Length: {len(data)}".encode()]) + b"\r\n\r\n" + data
