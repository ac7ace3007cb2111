"""An event loop on a thread of its own, so that a synchronous Hypothesis test can drive async servers.

Hypothesis runs a test body once per input and shrinks a failure by running it again; it cannot await. The real
servers (issuer, Workload API) run in this loop for a whole test module, and each input is one call into it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["BackgroundLoop"]

_T = TypeVar("_T")


class BackgroundLoop:
    """``with BackgroundLoop() as loop: loop.run(coro)``; async context entered with :meth:`enter` exit with it."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fuzz-loop", daemon=True
        )
        self._stack = AsyncExitStack()
        self._timeout = timeout

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=self._timeout)
            self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, _T], *, timeout: float | None = None) -> _T:
        """Run ``coroutine`` in the loop and return its result; a hang fails after ``timeout`` seconds."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=timeout if timeout is not None else self._timeout)

    def enter(self, context: AbstractAsyncContextManager[_T]) -> _T:
        """Enter ``context`` in the loop; it is exited, last in first out, when this loop closes."""
        return self.run(self._stack.enter_async_context(context))
