"""Exponential backoff with jitter for the loops that follow a peer which may be away for a while.

The node agent's links to the issuer and the issuer's watches of the Kubernetes API each waited ``delay``, doubled
it up to a cap and reset it after a success, written out four times. ``tenacity`` does exactly this; the one
policy lives here so that every loop waits the same way and logs the same event. The jitter (up to the first delay)
keeps a fleet of agents that lost the issuer together from coming back in lockstep, as the AWS architecture note
"Exponential Backoff And Jitter" explains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import tenacity

__all__ = ["Backoff"]

_log = structlog.get_logger(__name__)


class Backoff:
    """The waits between failed attempts: ``first`` seconds, doubling up to ``longest``, plus jitter.

    Use one :meth:`attempts` loop per stretch of failures; a new loop starts again at ``first``::

        async for attempt in backoff.attempts(KubernetesUnavailableError, event="pod_cache.unavailable"):
            with attempt:
                await watch_once()
    """

    def __init__(
        self,
        *,
        first: float,
        longest: float,
        jitter: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if first <= 0 or longest < first:
            raise ValueError("backoff needs 0 < first <= longest")
        self.first = first
        self.longest = longest
        self.jitter = first if jitter is None else jitter
        self._sleep = sleep  # tests pass a recorder instead of waiting

    def attempts(
        self,
        *errors: type[BaseException],
        event: str,
        **fields: Any,
    ) -> tenacity.AsyncRetrying:
        """Attempts that retry forever on ``errors`` (and only those), logging ``event`` before each wait."""

        def _before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            _log.warning(event, detail=_detail(error), retry_in=round(delay, 3), **fields)

        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(errors),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.first, max=self.longest, jitter=self.jitter
            ),
            before_sleep=_before_sleep,
            sleep=self._sleep,
            reraise=True,
        )


def _detail(error: BaseException | None) -> str:
    if error is None:
        return ""
    detail = getattr(error, "detail", None)
    return str(detail) if detail is not None else str(error)
