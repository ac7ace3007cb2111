"""The one fake clock of the test suite: time passes only when the test says so.

Sigil reads time in two shapes: the CA, the issuer and the node agent take a wall clock returning an aware
``datetime``; the TokenReview cache, the rate limiter and the kube-apiserver stand-in take POSIX seconds as a
``float`` (the shape of ``time.time``). One object serves both, so a test that moves time moves it for every part
it handed the clock to: pass ``clock`` where a ``datetime`` clock is wanted and ``clock.seconds`` where a ``float``
one is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A wall clock that moves only when told to: call it for the time, ``advance`` it for a TTL to pass."""

    def __init__(self, start: datetime | float | None = None) -> None:
        if start is None:
            # Whole seconds: X.509 validity has one-second resolution, so a minted certificate's dates compare
            # equal to the clock's reading.
            start = datetime.now(UTC).replace(microsecond=0)
        elif isinstance(start, float | int):
            start = datetime.fromtimestamp(start, UTC)
        if start.tzinfo is None:
            raise ValueError("a FakeClock starts at an aware datetime (naive ones have no instant)")
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def seconds(self) -> float:
        """The same instant as POSIX seconds, for parts whose clock is shaped like ``time.time``."""
        return self.current.timestamp()

    def advance(self, delta: timedelta | float) -> datetime:
        """Move time forward by ``delta`` (a ``timedelta``, or seconds) and return the new time."""
        self.current += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self.current
