"""Token buckets on `now_ns`: the rate limits of both ends of recovery.

A bucket holds up to `burst` tokens and refills at `rate_per_s`; `take(n, now_ns)`
succeeds only when `n` tokens are there, and `wait_ns(n, now_ns)` says how long until
they will be, so a refused caller can say "retry after" precisely instead of polling.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` banked; rate 0 means unlimited."""

    __slots__ = ("rate_per_s", "burst", "tokens", "last_ns")

    def __init__(self, rate_per_s: float, burst: float, now_ns: int = 0) -> None:
        if rate_per_s < 0 or burst < 0:
            raise ValueError("rate and burst must not be negative")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.last_ns = now_ns

    def _refill(self, now_ns: int) -> None:
        if now_ns > self.last_ns:
            self.tokens = min(self.burst, self.tokens + (now_ns - self.last_ns) * self.rate_per_s / 1e9)
            self.last_ns = now_ns

    def take(self, n: float, now_ns: int) -> bool:
        if self.rate_per_s == 0:
            return True
        self._refill(now_ns)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def available(self, now_ns: int) -> float:
        """Tokens there now (infinite when unlimited): what a caller may `take` without waiting."""
        if self.rate_per_s == 0:
            return math.inf
        self._refill(now_ns)
        return self.tokens

    def wait_ns(self, n: float, now_ns: int) -> int:
        """Nanoseconds until `n` tokens are there (0 if now); `n` above the burst never fits: -1."""
        if self.rate_per_s == 0:
            return 0
        if n > self.burst:
            return -1
        self._refill(now_ns)
        missing = n - self.tokens
        return 0 if missing <= 0 else int(missing * 1e9 / self.rate_per_s) + 1
