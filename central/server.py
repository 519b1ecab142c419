"""Serving the central: ``make_server`` (uvicorn with the connection limits, for ``central serve`` and tests),
and ``CentralServer``, the central in a background thread for tests, benchmarks and the simulated community.

``CentralServer(config, database).start()`` binds 127.0.0.1 on a free port (or the one given) and returns once
it answers; ``stop()`` shuts it down cleanly; ``start()`` again reuses the same port and database.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from central.app import close_app, create_app
from central.config import CentralConfig, ServerSection
from central.guard import ConnectionLimits, ThrottledAcceptLog, guarded_protocol, raise_fd_limit
from common.clock import Clock


class _Uvicorn(uvicorn.Server):
    """uvicorn with the accept-error log throttled (a descriptor shortage must not become a log flood)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(ThrottledAcceptLog())
        await super().startup(sockets)


def make_server(app: Any, server: ServerSection, **options: Any) -> uvicorn.Server:
    """uvicorn serving ``app`` under the [server] limits: head, body and idle timeouts, the connection cap."""
    cap, backlog = raise_fd_limit(server.max_connections)
    limits = ConnectionLimits(server.header_timeout_s, cap)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        backlog=backlog,
        timeout_keep_alive=max(1, round(server.idle_timeout_s)),
        timeout_graceful_shutdown=options.pop("timeout_graceful_shutdown", 5),
        **options,
    )
    return _Uvicorn(config)


class CentralServer:
    """One central on a loopback port, in a thread of this process."""

    def __init__(
        self,
        config: CentralConfig,
        database: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        wrap: Callable[[Any], Any] | None = None,
        log_level: str = "warning",
    ) -> None:
        self.config = config
        self.database = database  # a SQLite file or a postgresql:// URL
        self.host = host
        self.port = port
        self.clock = clock
        self._wrap = wrap
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app: Any = None

    @property
    def url(self) -> str:
        """Base URL without /api/v1."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving; returns when the server accepts connections. Raises RuntimeError if it cannot."""
        if self.running:
            return
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then; without it every
        # answer waits ~40 ms for a delayed ACK (Nagle), as measured here
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.app = create_app(self.config, self.database, self.clock)
        self.app.state.public_url = self.url
        served = self._wrap(self.app) if self._wrap else self.app
        self._server = make_server(
            served,
            self.config.server,
            log_level=self._log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"central:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"central did not start on {self.url}")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving (connections are refused afterwards) and close the database."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"central on {self.url} did not stop within {timeout_s} s")
        if self.app is not None:
            close_app(self.app)
        self._server = self._thread = self.app = None
