"""What the node benchmarks share: a central on loopback with a watch on its uploads, registration, and the
resource figures of a node process read from /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from central.config import parse_central_config
from central.server import CentralServer

SITE = "changbai-xincun"
CLAIM_KEY = "bench-claim-key-0000000001"
OPERATOR_KEY = "bench-operator-key-000000001"


class UploadWatch:
    """ASGI wrapper around the central: the monotonic times at which an upload to /api/v1/events whose body
    contains every one of ``needles`` was answered 200 (the events are then stored at the central)."""

    def __init__(self, *needles: bytes) -> None:
        self.needles = needles
        self.stored_at: list[float] = []

    @property
    def first(self) -> float | None:
        return self.stored_at[0] if self.stored_at else None

    def wrap(self, app: Any) -> Callable:
        async def watched(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/api/v1/events":
                await app(scope, receive, send)
                return
            body = bytearray()
            status: list[int] = []

            async def recv() -> Any:
                message = await receive()
                if message["type"] == "http.request":
                    body.extend(message.get("body", b""))
                return message

            async def snd(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)
                done = message["type"] == "http.response.body" and not message.get("more_body")
                if done and status == [200] and all(n in body for n in self.needles):
                    self.stored_at.append(time.monotonic())

            await app(scope, recv, snd)

        return watched


def start_central(folder: Path, watch: UploadWatch | None = None, fleet: dict[str, Any] | None = None) -> CentralServer:
    """The reference central on a free loopback port with a SQLite file in ``folder`` (``fleet``: settings of
    its simulated taxis)."""
    doc: dict[str, Any] = {
        "sites": [{"id": SITE, "name": "bench", "claim_key": CLAIM_KEY}],
        "operators": [{"name": "bench", "key": OPERATOR_KEY}],
        "fleet": dict(fleet or {}),
    }
    config = parse_central_config(doc, folder / "central.toml")
    server = CentralServer(config, folder / "central.sqlite3", wrap=watch.wrap if watch else None)
    server.start()
    return server


def register(server: CentralServer, node_id: str, role: str, token_file: Path, pickup_point: str = "") -> str:
    """Register a node with the site's claim key; its token goes to ``token_file`` (mode 0600) and is returned."""
    body = {"claim_key": CLAIM_KEY, "node_id": node_id, "role": role, "site": SITE, "location": "bench"}
    body["pickup_point"] = pickup_point
    answer = requests.post(f"{server.url}/api/v1/nodes/register", json=body, timeout=10)
    answer.raise_for_status()
    token: str = answer.json()["token"]
    token_file.write_text(token, encoding="utf-8")
    token_file.chmod(0o600)
    return token


@dataclass(frozen=True)
class ProcStat:
    """One reading of a process: CPU seconds (with the children it waited for), RSS, bytes it caused to be
    written to the block device (so a pty or a loopback socket does not count), threads."""

    cpu_s: float
    rss: int
    write_bytes: int
    threads: int


def cpu_s(pid: int) -> float:
    """CPU seconds of a process with the children it waited for (utime + stime + cutime + cstime): a helper the
    node spawns counts too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The living children of a process (of any of its threads)."""
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def proc_stat(pid: int) -> ProcStat:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    io = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines() if ":" in line)
    return ProcStat(
        cpu_s=cpu_s(pid),
        rss=int(status["VmRSS"].split()[0]) * 1024,
        write_bytes=int(io["write_bytes"]),
        threads=len(os.listdir(f"/proc/{pid}/task")),
    )


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants, living or ended (an ended child's time is in its
    parent's once reaped). A process gone meanwhile is skipped."""
    try:
        own, below = cpu_s(pid), children(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return own + sum(tree_cpu_s(child) for child in below)
