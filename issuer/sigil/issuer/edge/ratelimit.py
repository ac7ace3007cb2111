"""Per-caller token buckets, so one agent (or one address, before attestation) cannot starve the others.

SPIRE limits attestation and signing per caller IP (``pkg/server/api/limits``); Sigil keys by the strongest identity
it has: the agent's SPIFFE ID once mTLS proved it, else the peer address. The clock is injected for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sigil.issuer.errors import RateLimitedError

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` requests per second on average per caller, bursts up to ``burst``; callers idle long are forgotten."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_callers
        self._buckets: dict[str, _Bucket] = {}

    def check(self, caller: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``caller``'s bucket, or raise :class:`RateLimitedError`."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._evict(now)
            bucket = self._buckets[caller] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < cost:
            raise RateLimitedError(caller, (cost - bucket.tokens) / self.rate)
        bucket.tokens -= cost

    def _evict(self, now: float) -> None:
        full_after = self.burst / self.rate
        for caller in [c for c, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[caller]
        while len(self._buckets) >= self._max:
            del self._buckets[next(iter(self._buckets))]
