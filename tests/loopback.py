"""A TCP server on 127.0.0.1 for tests whose peer must behave as no library server does (drip its answer, hang
up after a TLS handshake); each connection is handed to the test's handler in a thread of its own."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """Serve until the block ends; yields the port. ``handle(conn, stop)`` owns ``conn``; ``stop`` is set at the end."""
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    server.settimeout(0.1)

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()
