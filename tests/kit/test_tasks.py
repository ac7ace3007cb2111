"""Owned tasks and the shared service lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from sigil.kit import Service, TaskOwner


async def test_aclose_cancels_and_awaits_every_running_task() -> None:
    """A task still running when its owner closes is cancelled, and aclose returns only once it has ended."""
    ended = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    owner = TaskOwner("test")
    task = owner.spawn(forever(), name="forever")
    await asyncio.sleep(0)
    await owner.aclose()
    assert task.cancelled()
    assert ended.is_set()
    assert owner.running == 0


async def test_a_failed_task_is_logged_at_once_and_raised_by_aclose() -> None:
    """An unexpected exception is logged as task.failed when the task ends and raised again on close."""

    async def broken() -> None:
        raise LookupError("bug")

    owner = TaskOwner("test")
    with capture_logs() as logs:
        task = owner.spawn(broken(), name="broken")
        await asyncio.wait([task])
        await asyncio.sleep(0)
    assert [e["event"] for e in logs] == ["task.failed"]
    assert logs[0]["task"] == "broken"
    with pytest.raises(LookupError, match="bug"):
        await owner.aclose()


async def test_a_closed_owner_refuses_new_tasks() -> None:
    """After aclose, spawn raises instead of starting a task nobody would stop."""
    owner = TaskOwner("test")
    await owner.aclose()

    async def idle() -> None:
        pass

    with pytest.raises(RuntimeError, match="closed"):
        owner.spawn(idle(), name="late")


async def test_async_with_closes_the_owner() -> None:
    """Leaving ``async with`` cancels the owner's tasks."""
    async with TaskOwner("test") as owner:
        task = owner.spawn(asyncio.sleep(3600), name="sleep")
        await asyncio.sleep(0)
    assert task.cancelled()


class _Recorder(Service):
    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[str] = []
        self._fail = fail

    async def start(self) -> None:
        self.calls.append("start")
        if self._fail:
            raise OSError("port in use")

    async def aclose(self) -> None:
        self.calls.append("aclose")


async def test_service_async_with_is_start_then_aclose() -> None:
    """``async with service`` starts it on entry and closes it on exit."""
    service = _Recorder()
    async with service as entered:
        assert entered is service
        assert service.calls == ["start"]
    assert service.calls == ["start", "aclose"]


async def test_a_service_that_fails_to_start_is_closed_before_the_error_propagates() -> None:
    """A half-started service releases what it took: aclose runs, then the start error is raised."""
    service = _Recorder(fail=True)
    with pytest.raises(OSError, match="port in use"):
        async with service:
            pass
    assert service.calls == ["start", "aclose"]
