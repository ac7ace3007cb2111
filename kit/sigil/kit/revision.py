"""A value with a revision that long-polling callers wait past: the shape of every ``?after_revision=`` route.

An agent asks "anything newer than revision R?" and the server answers at once when there is, or holds the request
until the revision changes or the caller's wait runs out, as Kubernetes' watch and SPIRE's bundle stream do. The
waiter must be woken by the change itself (a timer would add up to its period to every rotation's reach), and a
draining server must answer every waiter at once with what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Revisioned"]

_T = TypeVar("_T")


class Revisioned(Generic[_T]):
    """The current value and its revision; :meth:`wait_past` returns once the revision differs from the caller's."""

    def __init__(self, value: _T, revision: str) -> None:
        self._value = value
        self._revision = revision
        self._changed = asyncio.Condition()
        self._released = False

    @property
    def value(self) -> _T:
        return self._value

    @property
    def revision(self) -> str:
        return self._revision

    async def publish(self, value: _T, revision: str) -> bool:
        """Make ``value`` current; wake the waiters and return True when ``revision`` is a new one."""
        if revision == self._revision:
            return False
        self._value, self._revision = value, revision
        async with self._changed:
            self._changed.notify_all()
        return True

    async def wake(self) -> None:
        """Let every waiter check its condition again (something outside the revision changed)."""
        async with self._changed:
            self._changed.notify_all()

    async def release(self) -> None:
        """Answer every present and future waiter at once (the server is draining)."""
        self._released = True
        await self.wake()

    async def wait_past(
        self,
        revision: str | None,
        *,
        longest: float | None,
        also: Callable[[], bool] | None = None,
    ) -> _T:
        """The value once its revision differs from ``revision`` (or ``also()`` holds), else after ``longest`` s.

        ``longest`` None waits without a deadline (for callers that bound the wait themselves).

        With ``revision`` None only ``also()`` (checked at each publish or wake) or a release ends the wait early.
        """

        def moved() -> bool:
            if self._released or (also is not None and also()):
                return True
            return revision is not None and self._revision != revision

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest), self._changed:
                await self._changed.wait_for(moved)
        return self._value
