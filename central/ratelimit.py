"""Failed attempts per client address, as a token bucket: claim-key guessing gets 429 with Retry-After."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class FailureLimiter:
    """At most ``burst`` failures at once per address, refilled at ``per_minute``; ``max_addresses`` kept."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_addresses: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_addresses = max_addresses
        self._now = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def retry_after(self, address: str) -> float | None:
        """Seconds this address must wait before another attempt, or None when it may try now."""
        with self._lock:
            tokens = self._tokens(address, self._now())
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def failed(self, address: str) -> None:
        """Count one failed attempt from ``address``."""
        with self._lock:
            now = self._now()
            self._buckets[address] = (self._tokens(address, now) - 1.0, now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
