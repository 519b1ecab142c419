"""The channels: a ``Message`` formatted for each (generic webhook, WeCom robot, DingTalk robot, SMS gateway,
SMTP e-mail), signed where the receiver checks a signature, and sent once (``send``); retries are the worker's.

Formatting is pure (``render_http`` returns the request); only ``send`` touches the network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import smtplib
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from central.notify.config import ChannelSection
from central.notify.message import Message
from central.notify.replies import failed, http_outcome, robot_outcome, sms_outcome
from central.notify.retry import Outcome
from common.http import HttpClient, HttpFailure, HttpReply

ROBOT_MAX_BYTES = 2048  # WeCom's text limit (UTF-8 bytes); DingTalk is held to the same
SMS_MAX_BYTES = 600  # about 200 Chinese characters: a few SMS parts, the link whole
MAX_ANSWER_BYTES = 64 * 1024  # a robot's answer is under 100 bytes; anything this long is not one
SIGNATURE_HEADER = "X-Changbai-Signature"
TIMESTAMP_HEADER = "X-Changbai-Timestamp"


@dataclass(frozen=True)
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The generic webhook's signature: ``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float, max_age_s: float = 300) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent (replays are refused)."""
    try:
        fresh = abs(now - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signed mode: URL-encoded Base64 of HMAC-SHA256(secret, "timestamp\\nsecret")."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _signed(url: str, secret: str, key: str, body: bytes, now: float) -> HttpRequest:
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key}
    if secret:
        stamp = str(int(now))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign(secret, stamp, body)
    return HttpRequest(url, headers, body)


def render_http(channel: ChannelSection, message: Message, now: float) -> HttpRequest:
    """The HTTP request that carries ``message`` on ``channel`` (every type but email)."""
    mobiles = message.mobiles if channel.mention else []
    if channel.type == "webhook":
        return _signed(channel.url, channel.secret, message.key, _json(message.to_json(now)), now)
    if channel.type == "sms":
        body: dict[str, Any] = {"schema": "changbai-sms/1", "id": message.key, "to": message.mobiles,
                "text": message.text(SMS_MAX_BYTES)}  # fmt: skip
        return _signed(channel.url, channel.secret, message.key, _json(body), now)
    if channel.type == "wecom":
        text = {"content": message.text(ROBOT_MAX_BYTES), "mentioned_mobile_list": mobiles}
        return HttpRequest(channel.url, {"Content-Type": "application/json"}, _json({"msgtype": "text", "text": text}))
    if channel.type == "dingtalk":
        # DingTalk highlights an @ only when the number also appears in the text
        tail = "".join(f" @{m}" for m in mobiles)
        content = message.text(ROBOT_MAX_BYTES - len(tail.encode())) + tail
        body = {
            "msgtype": "text",
            "text": {"content": content},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }
        url = channel.url
        if channel.secret:
            ms = int(now * 1000)
            url += ("&" if "?" in url else "?") + f"timestamp={ms}&sign={dingtalk_sign(channel.secret, ms)}"
        return HttpRequest(url, {"Content-Type": "application/json"}, _json(body))
    raise ValueError(f"channel {channel.id}: {channel.type} is not an HTTP channel")


def render_email(channel: ChannelSection, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = channel.from_addr
    mail["To"] = ", ".join(dict.fromkeys([*message.emails, *channel.to]))
    # the same on every attempt: a mailbox that got a message whose 250 was lost can drop the repeat
    mail["Message-ID"] = f"<{message.key.replace(':', '.')}@changbai.invalid>"
    mail["X-Changbai-Delivery"] = message.key
    mail.set_content(message.text())
    return mail


def post(request: HttpRequest, timeout_s: float, read_body: bool) -> HttpReply:
    """One POST to a receiver we do not control, the whole attempt within ``timeout_s`` (a receiver dripping its
    answer a byte a second is cut there), never following a redirect (a 302 would turn the POST into a GET and
    a login page's 200 would pass for a delivery), at most ``MAX_ANSWER_BYTES`` of the answer read (``cut``);
    ``read_body`` False: the status line decides. Raises HttpFailure."""
    client = HttpClient(
        connect_timeout_s=timeout_s,
        read_timeout_s=timeout_s,
        total_timeout_s=timeout_s,
        max_reply_bytes=MAX_ANSWER_BYTES,
        trust_env=True,  # a central may reach the internet through its site's proxy
    )
    try:
        return client.request(
            "POST", request.url, body=request.body, headers=request.headers, read_body=read_body, cut=True
        )
    finally:
        client.close()


def _send_http(channel: ChannelSection, message: Message, timeout_s: float) -> Outcome:
    request = render_http(channel, message, time.time())
    robot = channel.type in ("wecom", "dingtalk")
    try:
        reply = post(request, timeout_s, read_body=channel.type != "webhook")
    except HttpFailure as exc:
        return Outcome(False, None, exc.text)
    if 300 <= reply.status < 400:
        where = reply.headers.get("Location", "")[:200]
        return Outcome(False, reply.status, f"HTTP {reply.status}: redirected to {where!r}, not followed (fix the url)")
    if robot:
        try:
            body = None if reply.cut else json.loads(reply.body)
        except ValueError:
            body = None
        return robot_outcome(reply.status, body, channel.type)
    if channel.type == "sms" and reply.cut:
        return Outcome(False, reply.status, f"HTTP {reply.status}: an answer over 64 KB is no SMS gateway's")
    if channel.type == "sms":
        return sms_outcome(reply.status, reply.body, reply.headers.get("Retry-After"))
    return http_outcome(reply.status, reply.headers.get("Retry-After"))


def _classify_smtp(exc: Exception) -> Outcome:
    """4xx, a dropped connection or a timeout: tried again; every recipient refused with 5xx: permanent; any
    other 5xx (sender, message or login refused): a person must fix the config, tried again slowly."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _ in exc.recipients.values()}
        refused = ", ".join(f"{who} {code}" for who, (code, _) in exc.recipients.items())[:200]
        kind = "permanent" if codes and all(c >= 500 for c in codes) else "retry"
        return failed(kind, None, f"SMTP refused every recipient: {refused}")
    code = getattr(exc, "smtp_code", None)
    text = getattr(exc, "smtp_error", b"")
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or exc)
    if isinstance(code, int) and code >= 500:
        return failed("fix", None, f"SMTP {code}: {text[:200]}")
    return Outcome(False, None, f"{type(exc).__name__}: {(f'{code} {text}' if code else str(exc))[:200]}")


def _send_email(channel: ChannelSection, message: Message, timeout_s: float) -> Outcome:
    """One SMTP session within ``timeout_s`` in all: a server that stalls or drips is cut off at the deadline."""
    mail = render_email(channel, message)
    if not mail["To"]:
        return Outcome(False, None, "no e-mail address: neither the contacts nor the channel's `to` give one")
    deadline = time.monotonic() + timeout_s
    smtp = smtplib.SMTP(timeout=timeout_s)
    cut = threading.Event()  # set when the watchdog ended the session: whatever was read after is not an answer
    watchdog: threading.Timer | None = None
    late = Outcome(False, None, f"no complete SMTP answer within {timeout_s:g} s")
    try:
        smtp.connect(channel.smtp_host, channel.smtp_port)
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (smtp.sock, cut))
        watchdog.daemon = True
        watchdog.start()
        if channel.smtp_starttls:
            smtp.starttls()
        if channel.smtp_user:
            smtp.login(channel.smtp_user, channel.smtp_password)
        refused = smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        smtp.close()
        if cut.is_set() or time.monotonic() >= deadline:
            return Outcome(False, None, f"{late.detail} ({type(exc).__name__})")
        return _classify_smtp(exc)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    try:
        if cut.is_set():  # a reply cut short ("250" of "250 2.0.0 queued") must not pass for an acceptance
            return late
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()  # the message is accepted once DATA got its 250: a lost QUIT changes nothing
    finally:
        smtp.close()
    if refused:  # some took it: told; the others are named
        return Outcome(True, None, "refused: " + ", ".join(f"{who} {code}" for who, (code, _) in refused.items()))
    return Outcome(True, None)


def _cut(sock: socket.socket | None, cut: threading.Event) -> None:
    cut.set()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def send(channel: ChannelSection, message: Message, timeout_s: float) -> Outcome:
    """One attempt to deliver ``message`` on ``channel``; never raises for a network or receiver failure."""
    if channel.type == "email":
        return _send_email(channel, message, timeout_s)
    if channel.type == "sms" and not message.mobiles:
        return Outcome(False, None, "no mobile number among the contacts of this role")
    return _send_http(channel, message, timeout_s)
