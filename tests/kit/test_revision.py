"""The revisioned long-poll value."""

from __future__ import annotations

import asyncio

from sigil.kit import Revisioned


async def test_a_waiter_behind_the_current_revision_gets_the_value_at_once() -> None:
    """Asking past an old revision answers immediately with the current value."""
    value = Revisioned("b", "r2")
    async with asyncio.timeout(1):
        assert await value.wait_past("r1", longest=60) == "b"


async def test_a_waiter_is_woken_by_a_new_revision() -> None:
    """A waiter on the current revision returns with the new value as soon as it is published."""
    value = Revisioned("a", "r1")
    waiter = asyncio.create_task(value.wait_past("r1", longest=60))
    await asyncio.sleep(0)
    assert not waiter.done()
    assert await value.publish("b", "r2")
    async with asyncio.timeout(1):
        assert await waiter == "b"


async def test_publishing_the_same_revision_wakes_nobody() -> None:
    """An unchanged revision is not news: publish returns False and waiters keep waiting."""
    value = Revisioned("a", "r1")
    waiter = asyncio.create_task(value.wait_past("r1", longest=60))
    await asyncio.sleep(0)
    assert not await value.publish("a", "r1")
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()


async def test_the_wait_ends_after_longest_with_the_current_value() -> None:
    """With no change, the waiter gets what there is once its wait runs out."""
    value = Revisioned("a", "r1")
    async with asyncio.timeout(1):
        assert await value.wait_past("r1", longest=0.01) == "a"


async def test_release_answers_every_waiter_now() -> None:
    """A draining server answers present and later waiters at once."""
    value = Revisioned("a", "r1")
    waiter = asyncio.create_task(value.wait_past("r1", longest=60))
    await asyncio.sleep(0)
    await value.release()
    async with asyncio.timeout(1):
        assert await waiter == "a"
        assert await value.wait_past("r1", longest=60) == "a"


async def test_an_extra_condition_is_checked_on_wake() -> None:
    """``also`` lets a caller stop waiting on a condition outside the revision, checked at each wake."""
    value = Revisioned("a", "r1")
    flag = False
    waiter = asyncio.create_task(value.wait_past("r1", longest=60, also=lambda: flag))
    await asyncio.sleep(0)
    flag = True
    await value.wake()
    async with asyncio.timeout(1):
        assert await waiter == "a"


async def test_without_a_revision_only_the_extra_condition_ends_the_wait() -> None:
    """With revision None a new revision alone does not wake the waiter; ``also`` does."""
    value = Revisioned(1, "r1")
    waiter = asyncio.create_task(value.wait_past(None, longest=60, also=lambda: value.value > 2))
    await value.publish(2, "r2")
    await asyncio.sleep(0)
    assert not waiter.done()
    await value.publish(3, "r3")
    async with asyncio.timeout(1):
        assert await waiter == 3
