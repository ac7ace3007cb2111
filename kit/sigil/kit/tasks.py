"""Owned background tasks and the one lifecycle of every Sigil service: ``start()``, ``aclose()``, ``async with``.

Each service used to create its tasks by hand and cancel them in a ``stop()`` or ``close()`` of its own, and each
copy differed in what it did with a task that had failed: some suppressed only ``CancelledError``, some dropped the
exception with the task. Here a task that ends with an exception is logged (``task.failed``) the moment it ends and
raised again by :meth:`TaskOwner.aclose`, so a bug never vanishes with its task. Cancelling and then awaiting is
what asyncio itself asks of an owner (https://docs.python.org/3/library/asyncio-task.html#task-cancellation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import structlog

__all__ = ["Service", "TaskOwner"]

_log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class TaskOwner:
    """Starts tasks and owns them until :meth:`aclose` cancels and awaits every one still running."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures: list[BaseException] = []
        self._closed = False

    def spawn(self, coroutine: Coroutine[Any, Any, _T], *, name: str) -> asyncio.Task[_T]:
        """Run ``coroutine`` as a task of this owner; a failure is logged at once and raised by :meth:`aclose`."""
        if self._closed:
            coroutine.close()  # never awaited otherwise, and Python would warn about it
            raise RuntimeError(f"{self.name} is closed; it starts no more tasks")
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    @property
    def running(self) -> int:
        """How many of this owner's tasks have not ended yet."""
        return len(self._tasks)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._failures.append(error)
            _log.error("task.failed", owner=self.name, task=task.get_name(), exc_info=error)

    async def aclose(self) -> None:
        """Cancel every task, wait for all of them to end, then raise the first failure, if any task failed."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        failures, self._failures = self._failures, []
        if failures:
            raise failures[0]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Service:
    """The lifecycle every Sigil service shares: ``async with service:`` is ``start()`` then ``aclose()``.

    A subclass overrides :meth:`start` and :meth:`aclose`; ``aclose`` must be safe to call when ``start`` failed
    half-way, because ``__aenter__`` calls it then, so that a half-started service leaves nothing running.
    """

    async def start(self) -> None:
        """Begin serving; the base does nothing."""

    async def aclose(self) -> None:
        """Stop serving and release what :meth:`start` took; the base does nothing."""

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
