"""When to try a failed delivery again, and one attempt's result (what the answer means: ``replies``).

A notification about a trapped passenger or a silent flat is retried until it is delivered (EN 81-28: a failed
send is retried with the shortest delay the network allows); the wait doubles from ``retry_min_s`` up to
``retry_max_s`` with jitter, and a receiver's ``Retry-After`` is honoured when it asks for longer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: ``ok``, the HTTP status (None: no answer or SMTP), what went wrong in words, and
    ``retry_after`` seconds when the receiver asked for a pause; ``permanent``: this message can never pass (an
    invalid number, refused content), so it is not tried again."""

    ok: bool
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    permanent: bool = False


def next_delay(attempts: int, retry_min_s: float, retry_max_s: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: min * 2^(attempts-1), capped, each drawn in [50 %, 100 %]."""
    base = min(retry_max_s, retry_min_s * (2 ** max(0, attempts - 1)))
    return base * (0.5 + 0.5 * (rng or random).random())


def delay_after(outcome: Outcome, attempts: int, retry_min_s: float, retry_max_s: float) -> float:
    """The wait after a failed attempt: the backoff, or the receiver's Retry-After when longer (capped)."""
    delay = next_delay(attempts, retry_min_s, retry_max_s)
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, retry_max_s))
    return delay


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is treated as absent)."""
    try:
        value = float(header) if header else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 86_400 else None
