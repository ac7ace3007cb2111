"""Exponential backoff with jitter."""

from __future__ import annotations

import random

import pytest

from sigil.kit import Backoff


class _Top(random.Random):
    """Always draws the top of the jitter range, so a wait is exactly its ceiling."""

    def random(self) -> float:
        return 1.0


class _Bottom(random.Random):
    """Always draws the bottom of the jitter range, so a wait is half its ceiling."""

    def random(self) -> float:
        return 0.0


def test_next_delay_counts_failures_and_reset_starts_over() -> None:
    """Each failure doubles the ceiling up to longest; each wait lies in [1/2, 1] of it; a success resets."""
    backoff = Backoff(first=1.0, longest=8.0, rng=random.Random(7))  # noqa: S311 -- a seeded draw for timing
    delays = [backoff.next_delay() for _ in range(5)]
    assert backoff.failures == 5
    for delay, ceiling in zip(delays, [1.0, 2.0, 4.0, 8.0, 8.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.failures == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_the_jitter_spans_half_to_all_of_the_ceiling() -> None:
    """The lowest draw waits half the ceiling (never zero), the highest all of it."""
    assert Backoff(first=2.0, longest=2.0, rng=_Bottom()).next_delay() == 1.0
    assert Backoff(first=2.0, longest=2.0, rng=_Top()).next_delay() == 2.0


def test_a_long_outage_stays_at_the_cap() -> None:
    """Thousands of failures in a row neither overflow nor pass longest."""
    backoff = Backoff(first=0.5, longest=30.0, rng=_Top())
    delays = [backoff.next_delay() for _ in range(5000)]
    assert max(delays) == delays[-1] == 30.0


async def test_sleep_uses_the_injected_sleep() -> None:
    """A test's sleep replaces asyncio.sleep, so no test waits out a backoff."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    await Backoff(first=1.0, longest=2.0, sleep=record).sleep(1.5)
    assert slept == [1.5]


def test_longest_below_first_is_refused() -> None:
    """A cap below the first wait is a programming error."""
    with pytest.raises(ValueError, match="first <= longest"):
        Backoff(first=2.0, longest=1.0)
