"""``central serve --workers N``: N processes serving one listening socket, on one PostgreSQL database.

The parent binds the socket and applies the database migrations once, then forks the workers (before it has any
thread or connection of its own) and watches them: a worker that dies is started again after a second; SIGTERM
or SIGINT is passed to every worker, which finishes its requests in flight (uvicorn's graceful shutdown), and
the parent exits when they have. The kernel hands each new connection to a worker that is waiting in
``accept()``, so a busy worker takes fewer. Each worker has its own admission bound, connection cap and
database pool: size ``[database] pool_size`` x N against PostgreSQL's ``max_connections``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("central")
RESTART_DELAY_S = 1.0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (IPPROTO_TCP: asyncio then sets TCP_NODELAY on each connection)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Forks ``count`` workers, each running ``serve(sock)`` (which returns an exit code), and keeps them up."""

    def __init__(self, serve: Callable[[socket.socket], int], sock: socket.socket, count: int) -> None:
        self.serve = serve
        self.sock = sock
        self.count = count
        self.children: dict[int, int] = {}  # pid -> worker number
        self.stopping = False

    def _fork(self, number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = self.serve(self.sock)
            except BaseException:  # noqa: BLE001 - a worker's crash is logged, then the parent restarts it
                log.exception("worker %d crashed", number)
            finally:
                os._exit(code)
        self.children[pid] = number
        log.info("worker %d started (pid %d)", number, pid)

    def _stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns 0 after a clean stop."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for number in range(1, self.count + 1):
            self._fork(number)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            gone = self.children.pop(pid, None)
            if gone is None or self.stopping:
                continue
            log.error("worker %d (pid %d) ended with status %d; starting it again", gone, pid, status)
            time.sleep(RESTART_DELAY_S)
            if not self.stopping:
                self._fork(gone)
        self.sock.close()
        return 0
