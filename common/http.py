"""The node's HTTP client for its central: TLS always verified, no redirects, no proxies or .netrc, and two bounds
the socket timeouts alone do not give: a total time per request (a reply dripped at 1 byte/s ends at the limit)
and a size limit on the reply (a 300 MB answer is refused after the first bytes over the limit)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

READ_CHUNK = 64 * 1024

# the watchdog of the request running on this thread, found by the connection when it has its socket
_current = threading.local()


@dataclass(frozen=True)
class HttpReply:
    """A complete reply: status, headers (case-insensitive), the whole body, and the status text."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str = ""


class HttpFailure(Exception):
    """No complete reply. ``kind``: tls, timeout, connection, too_large, invalid_url, other; ``text`` is safe to
    log (never a token or a body)."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


class _Watchdog:
    """One helper thread per client: when the request in flight passes its deadline, its socket is shut down,
    which ends any read or write blocked on it (the reply then fails as incomplete)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._sock: socket.socket | None = None
        self._closed = False
        self.fired = False
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)
                self._thread.start()
            self._deadline = time.monotonic() + seconds
            self._sock = None
            self.fired = False
            self._cond.notify()

    def attach(self, sock: socket.socket | None) -> None:
        with self._cond:
            if self._deadline is None or sock is None:
                return
            self._sock = sock
            if time.monotonic() >= self._deadline:
                self._fire()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._sock = None
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._deadline = None
            self._cond.notify()

    def _fire(self) -> None:
        self.fired = True
        self._deadline = None
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                # the plain socket's shutdown, also for a TLS socket: its own would drop the TLS object under the
                # reading thread; this only ends the transport, and the reader sees the connection end
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self._fire()
                else:
                    self._cond.wait(remaining)


def _watch(sock: socket.socket | None) -> None:
    watchdog = getattr(_current, "watchdog", None)
    if watchdog is not None:
        watchdog.attach(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection is not connected again
        super().request(*args, **kwargs)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection  # a subclass of urllib3's own


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class CentralHttp:
    """Requests to the central with every bound applied. One client per thread of use (the uploader's)."""

    def __init__(
        self,
        *,
        ca_bundle: Path | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float,
        max_reply_bytes: int,
    ) -> None:
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.total_timeout_s = total_timeout_s
        self.max_reply_bytes = max_reply_bytes
        self._session = requests.Session()
        # no proxies or .netrc from the environment: a netrc entry would replace our Authorization header
        self._session.trust_env = False
        # TLS verification is always on; a CA bundle adds trust, nothing turns it off
        self._session.verify = str(ca_bundle) if ca_bundle else True
        adapter = _WatchedAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._watchdog = _Watchdog()

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> HttpReply:
        """One request; the whole reply read within ``total_timeout_s``. Raises HttpFailure."""
        self._watchdog.arm(self.total_timeout_s)
        _current.watchdog = self._watchdog
        try:
            return self._exchange(method, url, body, headers)
        except HttpFailure:
            raise
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc) from exc
        finally:
            _current.watchdog = None
            self._watchdog.disarm()

    def _exchange(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None) -> HttpReply:
        response = self._session.request(
            method,
            url,
            data=body,
            headers=dict(headers or {}),
            timeout=self.timeouts,
            allow_redirects=False,
            stream=True,
        )
        try:
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > self.max_reply_bytes:
                raise HttpFailure(
                    "too_large", f"ReplyTooLarge: {int(announced)} bytes announced; at most {self.max_reply_bytes}"
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(READ_CHUNK):
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise HttpFailure("too_large", f"ReplyTooLarge: more than {self.max_reply_bytes} bytes")
                chunks.append(chunk)
            if self._watchdog.fired:  # the deadline cut the reply short: what arrived is not the whole answer
                raise HttpFailure("timeout", f"Deadline: no complete reply within {self.total_timeout_s:g} s")
            return HttpReply(response.status_code, response.headers, b"".join(chunks), response.reason or "")
        finally:
            response.close()  # a reply not read to its end closes the connection instead of returning it

    def _failure(self, exc: requests.exceptions.RequestException) -> HttpFailure:
        if self._watchdog.fired:
            return HttpFailure("timeout", f"Deadline: no complete reply within {self.total_timeout_s:g} s")
        if isinstance(exc, requests.exceptions.SSLError):
            return HttpFailure("tls", f"SSLError: TLS verification failed ({_short(exc)})")
        if isinstance(exc, requests.exceptions.Timeout):
            return HttpFailure("timeout", type(exc).__name__)
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return HttpFailure("connection", f"{type(exc).__name__}: {_short(exc)}")
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return HttpFailure("invalid_url", f"{type(exc).__name__}: {_short(exc)}")
        return HttpFailure("other", type(exc).__name__)

    def close(self) -> None:
        self._session.close()
        self._watchdog.close()


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:200]
