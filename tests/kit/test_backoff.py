"""Exponential backoff with jitter."""

from __future__ import annotations

from unittest import mock

import pytest
from structlog.testing import capture_logs

from sigil.kit import Backoff


class _AwayError(Exception):
    detail = "connection refused"


async def test_waits_double_from_first_up_to_longest_within_the_jitter() -> None:
    """Each wait is first, 2x first, ... capped at longest, plus at most the jitter."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    backoff = Backoff(first=0.5, longest=3.0, jitter=0.1, sleep=sleep)
    retrying = backoff.attempts(_AwayError, event="peer.unavailable")
    failures = 0
    with capture_logs():
        async for attempt in retrying:
            with attempt:
                failures += 1
                if failures <= 5:
                    raise _AwayError
    for wait, floor in zip(waits, [0.5, 1.0, 2.0, 3.0, 3.0], strict=True):
        assert floor <= wait <= min(floor + 0.1, 3.0) or wait == 3.0


async def test_each_wait_is_logged_with_the_event_the_detail_and_the_delay() -> None:
    """Before each wait the caller's event is logged with the error's detail and the coming delay."""

    async def sleep(seconds: float) -> None:
        pass

    retrying = Backoff(first=1.0, longest=1.0, jitter=0.0, sleep=sleep).attempts(
        _AwayError, event="peer.unavailable", path="/x"
    )
    with capture_logs() as logs:
        async for attempt in retrying:
            with attempt:
                if not logs:
                    raise _AwayError
    assert logs == [
        {
            "event": "peer.unavailable",
            "detail": "connection refused",
            "retry_in": 1.0,
            "path": "/x",
            "log_level": "warning",
        }
    ]


async def test_other_errors_are_not_retried() -> None:
    """An error the caller did not name passes straight through: a bug is not retried forever."""
    sleep = mock.AsyncMock()
    retrying = Backoff(first=1.0, longest=2.0, sleep=sleep).attempts(
        _AwayError, event="peer.unavailable"
    )

    async def run() -> None:
        async for attempt in retrying:
            with attempt:
                raise KeyError("bug")

    with pytest.raises(KeyError):
        await run()
    sleep.assert_not_called()


def test_longest_below_first_is_refused() -> None:
    """A cap below the first wait is a programming error."""
    with pytest.raises(ValueError, match="first <= longest"):
        Backoff(first=2.0, longest=1.0)
