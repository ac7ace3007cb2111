"""Exponential backoff with jitter for everything that follows a peer which may be away for a while.

The node agent's links to the issuer and the issuer's watches of the Kubernetes API each computed "double the
wait up to a cap, reset after a success" on their own. The rule lives here once: after the n-th failure in a row
the ceiling is ``first * 2**(n-1)``, at most ``longest``, and the wait is drawn between half and all of it, so a
fleet of agents that lost the issuer together does not come back in lockstep and none is unlucky enough to draw
zero and hammer it ("equal jitter" in the AWS Architecture Blog's "Exponential Backoff And Jitter").

A loop asks :meth:`Backoff.next_delay` after a failure (and sleeps, or schedules the retry on its injected clock)
and calls :meth:`Backoff.reset` after a success. ``tenacity`` was tried for the sleeping loops and left out: with
it the pod cache's tests now and then found a watch connection left open (its retry state keeps the failed
attempt's exception and frames alive past the attempt), and these loops retry forever and need nothing else of it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

__all__ = ["Backoff"]

#: Doubling stops counting here: the ceiling is long reached, and 2**n stays a small float.
_MAX_DOUBLINGS = 30


class Backoff:
    """Waits after failures: doubling from ``first`` seconds to at most ``longest``, each drawn in [½, 1] of it."""

    def __init__(
        self,
        *,
        first: float,
        longest: float,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if first <= 0 or longest < first:
            raise ValueError("backoff needs 0 < first <= longest")
        self.first = first
        self.longest = longest
        self._rng = rng or random.Random()  # noqa: S311 -- jitter for timing, not secrets
        self._sleep = sleep  # tests pass a recorder instead of waiting
        self._failures = 0

    def delay_after(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (at least one), jitter drawn."""
        ceiling = min(self.first * 2.0 ** min(failures - 1, _MAX_DOUBLINGS), self.longest)
        return ceiling * (0.5 + self._rng.random() / 2)

    @property
    def failures(self) -> int:
        """Consecutive failures counted by :meth:`next_delay` since the last :meth:`reset`."""
        return self._failures

    def next_delay(self) -> float:
        """Count a failure and return how many seconds to wait before the next attempt."""
        self._failures = min(self._failures + 1, _MAX_DOUBLINGS + 1)
        return self.delay_after(self._failures)

    def reset(self) -> None:
        """A success: the next failure waits about ``first`` again."""
        self._failures = 0

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` with the sleep this backoff was given (``asyncio.sleep`` unless a test's)."""
        await self._sleep(seconds)
