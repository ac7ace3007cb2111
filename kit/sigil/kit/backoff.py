"""Exponential backoff with jitter for everything that follows a peer which may be away for a while.

The node agent's links to the issuer and the issuer's watches of the Kubernetes API each computed "double the
wait up to a cap, reset after a success" on their own. The rule lives here once: after the n-th failure in a row
the ceiling is ``first * 2**(n-1)``, at most ``longest``, and the wait is drawn between half and all of it, so a
fleet of agents that lost the issuer together does not come back in lockstep and none is unlucky enough to draw
zero and hammer it ("equal jitter" in the AWS Architecture Blog's "Exponential Backoff And Jitter").

Two ways to use it: a loop that sleeps runs its attempts through ``tenacity`` (:meth:`Backoff.attempts`); one
that schedules a retry on an injected clock asks :meth:`Backoff.next_delay` and calls :meth:`Backoff.reset`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import tenacity

__all__ = ["Backoff"]

_log = structlog.get_logger(__name__)

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

    def attempts(
        self,
        *errors: type[BaseException],
        event: str,
        **fields: Any,
    ) -> tenacity.AsyncRetrying:
        """Attempts that retry forever on ``errors`` (and only those), logging ``event`` before each wait.

        Use one loop per stretch of failures; a new loop starts again at ``first``::

            async for attempt in backoff.attempts(KubernetesUnavailableError, event="pod_cache.unavailable"):
                with attempt:
                    await watch_once()
        """

        def _wait(state: tenacity.RetryCallState) -> float:
            return self.delay_after(state.attempt_number)

        def _before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            _log.warning(event, detail=_detail(error), retry_in=round(delay, 3), **fields)

        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(errors),
            wait=_wait,
            before_sleep=_before_sleep,
            sleep=self._sleep,
            reraise=True,
        )


def _detail(error: BaseException | None) -> str:
    if error is None:
        return ""
    detail = getattr(error, "detail", None)
    return str(detail) if detail is not None else str(error)
