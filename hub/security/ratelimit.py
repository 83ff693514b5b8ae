"""Per-key rate limit: a token bucket per API key, in the memory of each server process.

``HUB_RATE_LIMIT`` requests per second per key (default 200; 0 turns it off) with
bursts up to ``HUB_RATE_BURST`` (default twice the rate). The bucket lives in the
process: with N server processes a key may reach N times the rate in the worst
case, which is what a limit meant to stop a runaway sender needs, without a
round trip to Redis on every request.
"""

from __future__ import annotations

import math
import threading
import time

from hub.settings import Settings


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, last refill)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.rate_limit, settings.rate_burst)

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
