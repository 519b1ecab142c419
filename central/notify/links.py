"""The acknowledgement link in a message: signed, expiring, naming the alert and the person it was sent to.

``make_link`` gives ``{public_url}/ack/{token}``; ``read_token`` checks the signature (HMAC-SHA256 with the
central's link secret) and the expiry, and returns who may answer which alert. The token carries no secret of
its own: anyone holding the link may answer it once per choice, which is what a family member forwarding it to
a neighbour would want; the answer is recorded with the name the link was made for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

CHOICES = {"known": "我已知晓", "going": "我去看看"}
LINK_VIA = "ack-link:"  # an alert acknowledged by a link records ``acknowledged_via`` as this and the role


class LinkError(Exception):
    """A link that cannot be used: tampered, malformed or expired (the message says which, in Chinese)."""


@dataclass(frozen=True)
class LinkClaim:
    alert: int
    role: str
    name: str
    delivery: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: bytes, claim: LinkClaim) -> str:
    body = json.dumps(
        {"a": claim.alert, "r": claim.role, "n": claim.name, "d": claim.delivery, "x": round(claim.expires_at)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    return f"{_b64(body)}.{_b64(mac)}"


def make_link(public_url: str, secret: bytes, claim: LinkClaim) -> str:
    return f"{public_url.rstrip('/')}/ack/{make_token(secret, claim)}"


def read_token(secret: bytes, token: str, now: float) -> LinkClaim:
    """The claim of a valid token; raises LinkError otherwise."""
    try:
        body_text, mac_text = token.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, TypeError) as exc:
        raise LinkError("链接不完整，请打开短信中的完整链接") from exc
    if not hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest()[:16], mac):
        raise LinkError("链接无效（签名不符）")
    try:
        data = json.loads(body)
        claim = LinkClaim(int(data["a"]), str(data["r"]), str(data["n"]), str(data["d"]), float(data["x"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise LinkError("链接无效") from exc
    if now > claim.expires_at:
        raise LinkError("链接已过期，请直接致电社区值班室")
    return claim
