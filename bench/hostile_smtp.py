"""A hostile SMTP server on 127.0.0.1: each connection follows the next step of a script, the ways a real mail
server or the network between fails (RFC 5321 replies, written on a raw socket so it can misbehave):

- ``stall``: takes DATA's first line, then reads and answers nothing more;
- ``drip``: takes the message, then answers ``250`` one byte every 0.4 s;
- ``drop``: takes the message, then closes the connection without a reply;
- ``451``: takes the message, then refuses it for now (``451 4.3.0``);
- ``550``: refuses the recipient (``550 5.1.1 no such user``);
- ``ok`` (also when the script is used up): ``250`` and the message is kept.

``sessions`` lists every connection: its step, the message it took (if any) and when it ended.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast


@dataclass
class Session:
    step: str
    data: bytes = b""
    delivered: bool = False
    ended_at: float = 0.0

    def mail(self) -> EmailMessage:
        return cast(EmailMessage, message_from_bytes(self.data, policy=policy.default))


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        session = owner._begin()
        try:
            self._converse(owner, session)
        except OSError:
            pass  # the client gave up (its deadline): that is what the step was for
        finally:
            session.ended_at = time.time()
            owner._end(session)

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def _converse(self, owner: HostileSmtp, s: Session) -> None:
        self._say("220 hostile.test ESMTP")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self._say("250 hostile.test")
            elif verb == b"RCPT" and s.step == "550":
                self._say("550 5.1.1 <recipient>: no such user here")
            elif verb == b"DATA":
                self._say("354 End data with <CR><LF>.<CR><LF>")
                if s.step == "stall":
                    self.rfile.readline()
                    owner.closing.wait(30)
                    return
                s.data = self._message()
                if s.step == "drop":
                    return
                if s.step == "451":
                    self._say("451 4.3.0 Temporary local problem, try again later")
                    continue
                if s.step == "drip":
                    for byte in b"250 2.0.0 queued\r\n":
                        self.wfile.write(bytes([byte]))
                        if owner.closing.wait(0.4):
                            return
                else:
                    self._say("250 2.0.0 queued")
                s.delivered = True
            elif verb == b"QUIT":
                self._say("221 2.0.0 bye")
                return
            else:  # MAIL, RCPT, RSET, NOOP
                self._say("250 2.0.0 ok")

    def _message(self) -> bytes:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HostileSmtp


class HostileSmtp:
    """``HostileSmtp(["stall", "drop", "451", "ok"]).start()``; ``port``; ``sessions``; ``wait_for``; ``stop``."""

    def __init__(self, script: list[str]) -> None:
        self.script = deque(script)
        self.sessions: list[Session] = []
        self.closing = threading.Event()
        self._cond = threading.Condition()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> HostileSmtp:
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-smtp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

    def _begin(self) -> Session:
        with self._cond:
            session = Session(self.script.popleft() if self.script else "ok")
            self.sessions.append(session)
        return session

    def _end(self, _: Session) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.sessions), timeout_s)
