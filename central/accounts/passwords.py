"""Passwords hashed with scrypt (memory-hard: 32 MiB and about 0.1 s per guess here), stored with their parameters.

Format: ``scrypt$N$r$p$salt$hash`` (salt and hash URL-safe Base64), so the cost can be raised later and old
hashes still check. ``verify`` compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1  # 128 * N * r bytes = 32 MiB of memory per hash
MIN_LENGTH = 10


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32)


def hash_password(password: str, n: int = N) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, n, R, P))}"


def verify(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored``; False for anything else, a malformed hash included."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


def weakness(password: str) -> str | None:
    """Why a new password is refused, in words, or None."""
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(set(password)) < 4:
        return "too few different characters"
    return None
