"""One HTTP POST to a receiver we do not control, bounded in every way a hostile one could stretch it.

``requests``' timeout limits each socket read, so a receiver that drips its headers or body one byte a second
would hold a notifier thread for as long as it likes. Here the whole attempt has a deadline: a watchdog shuts the
connection's socket down when it passes (the blocked read then ends at once). Redirects are never followed (a
302 would turn the POST into a GET and a login page's 200 would pass for a delivery) and at most
``MAX_BODY_BYTES`` of an answer are read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_BODY_BYTES = 64 * 1024  # a robot's answer is under 100 bytes; anything this long is not one
_local = threading.local()


@dataclass(frozen=True)
class Reply:
    """What came back: the status, its headers, up to ``MAX_BODY_BYTES`` of body (``cut``: there was more)."""

    status: int
    headers: dict[str, str]
    body: bytes
    cut: bool = False


class DeadlineExceeded(Exception):
    """No complete answer within the attempt's time limit."""


def _arm(sock: Any) -> None:
    """Shut ``sock`` down when this thread's attempt runs out of time (called once connected)."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None or sock is None:
        return

    def cut() -> None:
        with contextlib.suppress(OSError):
            # on the plain socket under any TLS: the blocked read in the other thread sees the end at once
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    _local.timers.append(timer)


class _Conn(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _arm(self.sock)


class _TlsConn(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _arm(self.sock)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConn


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float, read_body: bool = True) -> Reply:
    """POST ``body`` and return the answer (its body only when ``read_body``: a webhook's status says it all),
    all within ``timeout_s``; raises ``requests.RequestException`` for a network failure and
    ``DeadlineExceeded`` when the receiver was too slow."""
    _local.deadline = time.monotonic() + timeout_s
    _local.timers = []
    try:
        with requests.Session() as session:
            session.mount("http://", _Adapter())
            session.mount("https://", _Adapter())
            try:
                return _read(session, url, body, headers, timeout_s, read_body)
            except (requests.RequestException, OSError) as exc:
                if time.monotonic() >= _local.deadline:
                    raise DeadlineExceeded(f"no complete answer within {timeout_s:g} s") from exc
                raise
    finally:
        for timer in _local.timers:
            timer.cancel()
        _local.deadline = None


def _read(
    session: requests.Session, url: str, body: bytes, headers: dict[str, str], timeout_s: float, read_body: bool
) -> Reply:
    reply = session.post(url, data=body, headers=headers, timeout=timeout_s, allow_redirects=False, stream=True)
    with reply:
        data, cut = b"", False
        for chunk in reply.iter_content(8192) if read_body else ():
            data += chunk
            if len(data) > MAX_BODY_BYTES:
                data, cut = data[:MAX_BODY_BYTES], True
                break
        if time.monotonic() >= _local.deadline:
            raise DeadlineExceeded(f"no complete answer within {timeout_s:g} s")
        return Reply(reply.status_code, dict(reply.headers), data, cut)
