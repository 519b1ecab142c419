"""The one HTTP client of the project (the node's uploader, the kiosk's rides, the technician's ``provision``,
the updater, the central's notifier): TLS always verified, no redirects, no proxies or .netrc, and two bounds
the socket timeouts alone do not give: a total time per request (a reply dripped at 1 byte/s ends at the limit)
and a size limit on the reply (a 300 MB answer is refused, or cut, after the first bytes over the limit)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

if TYPE_CHECKING:
    from common.config import CentralSection

READ_CHUNK = 64 * 1024

# the watchdog of the request running on this thread, found by the connection when it has its socket
_current = threading.local()


@dataclass(frozen=True)
class HttpReply:
    """A complete reply: status, headers (case-insensitive), the whole body (``cut``: only its first
    ``max_reply_bytes``, where the request asked to cut rather than fail), and the status text."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str = ""
    cut: bool = False

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (or was cut)."""
        if self.cut:
            raise ValueError("the reply was cut at its size limit")
        return json.loads(self.body)


class HttpFailure(Exception):
    """No complete reply. ``kind``: tls, timeout, connection, too_large, invalid_url, other; ``name`` the failure's
    class (``ConnectTimeout``, ``ReadTimeout``, ``DeadlineExceeded``, ``ConnectionError``, ``ReplyTooLarge`` ...);
    ``reason`` the innermost cause in a few words; ``text`` (name: reason) is safe to log (never a token or a
    body)."""

    def __init__(self, kind: str, name: str, reason: str = "") -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        self.text = f"{name}: {reason}" if reason else name
        super().__init__(self.text)


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


class HttpClient:
    """Requests with every bound applied. One request at a time per client (one client per thread of use)."""

    def __init__(
        self,
        *,
        ca_bundle: Path | None = None,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float,
        max_reply_bytes: int,
        trust_env: bool = False,
    ) -> None:
        """``trust_env``: use the environment's proxy settings (the central reaching the internet through a site
        proxy); a node never does, so no proxy or .netrc entry replaces its Authorization header."""
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.total_timeout_s = total_timeout_s
        self.max_reply_bytes = max_reply_bytes
        self._session = requests.Session()
        self._session.trust_env = trust_env
        # TLS verification is always on; a CA bundle adds trust, nothing turns it off
        self._session.verify = str(ca_bundle) if ca_bundle else True
        adapter = _WatchedAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._watchdog = _Watchdog()

    @classmethod
    def for_central(cls, central: CentralSection) -> HttpClient:
        """A client to the node's central with its ``[central]`` TLS, timeouts, time and size limits."""
        return cls(
            ca_bundle=central.ca_bundle,
            connect_timeout_s=central.connect_timeout_s,
            read_timeout_s=central.read_timeout_s,
            total_timeout_s=central.request_limit_s,
            max_reply_bytes=int(central.max_reply_kb * 1024),
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        read_body: bool = True,
        cut: bool = False,
    ) -> HttpReply:
        """One request; the whole reply read within ``total_timeout_s``. Raises HttpFailure.

        ``read_body`` False: the status line and headers only (a receiver whose status says it all). ``cut``: a
        body over ``max_reply_bytes`` is cut there (``HttpReply.cut``) instead of failing as too large.
        """
        self._watchdog.arm(self.total_timeout_s)
        _current.watchdog = self._watchdog
        try:
            return self._exchange(method, url, body, headers, read_body, cut)
        except HttpFailure:
            raise
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc) from exc
        except OSError as exc:  # the socket shut under a read by the deadline; any other stays the caller's
            if self._watchdog.fired:
                raise self._deadline() from exc
            raise
        finally:
            _current.watchdog = None
            self._watchdog.disarm()

    def request_json(
        self, method: str, url: str, value: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> HttpReply:
        """``request`` with ``value`` (None: no body) sent as UTF-8 JSON."""
        sent = dict(headers or {})
        body = None
        if value is not None:
            body = json.dumps(value, ensure_ascii=False).encode("utf-8")
            sent.setdefault("Content-Type", "application/json")
        return self.request(method, url, body=body, headers=sent)

    @contextmanager
    def stream(self, url: str, headers: Mapping[str, str] | None = None) -> Iterator[requests.Response]:
        """A GET whose body the caller reads as it comes (a release file): the same TLS, proxy and redirect rules
        and socket timeouts, but no total time or size limit (the caller bounds both). Raises HttpFailure for no
        answer; ``requests`` and ``urllib3`` errors while the body is read are the caller's."""
        try:
            response = self._session.get(
                url, headers=dict(headers or {}), timeout=self.timeouts, allow_redirects=False, stream=True
            )
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc) from exc
        with response:
            yield response

    def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        read_body: bool,
        cut: bool,
    ) -> HttpReply:
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
            data, was_cut = self._read(response, cut) if read_body else (b"", False)
            if self._watchdog.fired:  # the deadline cut the reply short: what arrived is not the whole answer
                raise self._deadline()
            return HttpReply(response.status_code, response.headers, data, response.reason or "", was_cut)
        finally:
            response.close()  # a reply not read to its end closes the connection instead of returning it

    def _read(self, response: requests.Response, cut: bool) -> tuple[bytes, bool]:
        limit = self.max_reply_bytes
        announced = response.headers.get("Content-Length", "")
        if not cut and announced.isdigit() and int(announced) > limit:
            raise HttpFailure("too_large", "ReplyTooLarge", f"{int(announced)} bytes announced; at most {limit}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                if not cut:
                    raise HttpFailure("too_large", "ReplyTooLarge", f"more than {limit} bytes")
                chunks.append(chunk[: len(chunk) - (size - limit)])
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False

    def _deadline(self) -> HttpFailure:
        return HttpFailure("timeout", "DeadlineExceeded", f"no complete reply within {self.total_timeout_s:g} s")

    def _failure(self, exc: requests.exceptions.RequestException) -> HttpFailure:
        if self._watchdog.fired:
            return self._deadline()
        name, reason = type(exc).__name__, innermost_reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return HttpFailure("tls", name, reason)
        if isinstance(exc, requests.exceptions.Timeout):
            return HttpFailure("timeout", name)  # the name says it all ("ReadTimeout")
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return HttpFailure("connection", name, reason)
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return HttpFailure("invalid_url", name, reason)
        return HttpFailure("other", name, reason)

    def close(self) -> None:
        self._session.close()
        self._watchdog.close()


def innermost_reason(exc: BaseException) -> str:
    """The innermost cause of a network failure in a line ("[Errno 111] Connection refused"), without the layers
    ``requests`` and ``urllib3`` wrap around it ("Max retries exceeded ... Caused by ...")."""
    reason: BaseException = exc
    for _ in range(10):
        inner = reason.args[0] if reason.args else None
        inner = inner if isinstance(inner, BaseException) else getattr(reason, "reason", None)
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason).replace("\n", " ")
    if ": " in text and type(reason).__name__ in ("NewConnectionError", "ConnectTimeoutError", "NameResolutionError"):
        text = text.split(": ", 1)[1]  # "<urllib3.connection.HTTPConnection object at 0x...>: Failed to ..."
    return text[:200]
