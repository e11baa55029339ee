"""Token buckets per principal: at most `rate` requests a second from one SDK key, with bursts of `burst`.

Kept per server process (no Redis round trip on the ingestion path): a server running N worker processes
accepts up to N times the rate from one key. The buckets are keyed by principal name, a set fixed by the
configuration, so the memory they take is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = max(burst, 1.0)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """Take one token for `name`: 0.0 when taken, else the seconds until one is there (nothing taken)."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self._rate
