"""Waiting for a state instead of sleeping for a guess: poll a condition until it holds or a deadline passes.

A fixed ``sleep`` is either too short on a loaded machine (a flaky test) or too long everywhere else (a slow
one). Where the code under test offers an event, wait for that; where the state can only be observed from
outside (an API server's object, a counter, a file), poll it here, with a deadline that fails the test with
what was being waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

__all__ = ["WaitTimeoutError", "entered", "eventually", "eventually_sync"]

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The awaited state did not come before the deadline (an ``AssertionError``: the test fails, not errors)."""

    def __init__(self, what: str, within: float) -> None:
        super().__init__(f"not within {within} s: {what}")
        self.what = what
        self.within = within


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    within: float = ...,
    interval: float = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T | None], *, what: str, within: float = ..., interval: float = ...
) -> T: ...


async def eventually(
    condition: Callable[[], Any],
    *,
    what: str,
    within: float = 10.0,
    interval: float = 0.02,
) -> Any:
    """Call ``condition`` (sync or async) until it returns something truthy, and return that; fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(what, within)
        await asyncio.sleep(interval)


def eventually_sync(
    condition: Callable[[], T | None], *, what: str, within: float = 10.0, interval: float = 0.05
) -> T:
    """``eventually`` for code outside an event loop (it blocks the calling thread between tries)."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(what, within)
        time.sleep(interval)


@contextmanager
def entered(owner: object, method: str) -> Iterator[asyncio.Event]:
    """An event set each time ``owner.method`` (a coroutine method) is entered, for as long as the block runs.

    For "the request has reached the server and is waiting": the event is set before the method's own body runs,
    and the test resumes only once the caller's task yields, which a long poll does when it starts to wait. The
    method is wrapped on this one instance and restored on the way out.
    """
    original = getattr(owner, method)
    reached = asyncio.Event()

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        return await original(*args, **kwargs)

    setattr(owner, method, wrapper)
    try:
        yield reached
    finally:
        delattr(owner, method)
