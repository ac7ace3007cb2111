"""Exponential backoff with jitter."""

from __future__ import annotations

import random
from unittest import mock

import pytest
from structlog.testing import capture_logs

from sigil.kit import Backoff


class _Top(random.Random):
    """Always draws the top of the jitter range, so a wait is exactly its ceiling."""

    def random(self) -> float:
        return 1.0


class _AwayError(Exception):
    detail = "connection refused"


async def test_waits_double_from_first_up_to_longest_within_the_jitter() -> None:
    """Each wait lies between half and all of first, 2x first, ... capped at longest."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    backoff = Backoff(first=0.5, longest=3.0, sleep=sleep)
    failures = 0
    with capture_logs():
        async for attempt in backoff.attempts(_AwayError, event="peer.unavailable"):
            with attempt:
                failures += 1
                if failures <= 5:
                    raise _AwayError
    for wait, ceiling in zip(waits, [0.5, 1.0, 2.0, 3.0, 3.0], strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_next_delay_counts_failures_and_reset_starts_over() -> None:
    """A scheduler's view of the same rule: each failure doubles the ceiling; a success resets it."""
    backoff = Backoff(first=1.0, longest=8.0, rng=random.Random(7))  # noqa: S311 -- a seeded draw for timing
    delays = [backoff.next_delay() for _ in range(5)]
    assert backoff.failures == 5
    for delay, ceiling in zip(delays, [1.0, 2.0, 4.0, 8.0, 8.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.failures == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


async def test_each_wait_is_logged_with_the_event_the_detail_and_the_delay() -> None:
    """Before each wait the caller's event is logged with the error's detail and the coming delay."""

    async def sleep(seconds: float) -> None:
        pass

    retrying = Backoff(first=1.0, longest=1.0, rng=_Top(), sleep=sleep).attempts(
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
