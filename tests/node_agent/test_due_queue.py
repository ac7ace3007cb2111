"""The SVID cache's queue of due moments: each workload comes due once, at its latest moment, and re-scheduling
many workloads does not leave the queue holding an entry per change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sigil.node_agent.svid_cache.workload import Workload
from sigil.node_agent.svid_cache.workload_table import DueQueue

START = datetime(2026, 1, 1, tzinfo=UTC)


def workloads(count: int) -> list[Workload]:
    return [
        Workload(key=("selectors", f"unix:uid:{n}"), pod=None, selectors=(), last_seen=START)
        for n in range(count)
    ]


def test_a_rescheduled_workload_comes_due_once_at_its_last_moment() -> None:
    """Scheduled at 10 s then moved to 5 s and 20 s, a workload is due at 20 s only, and only once."""
    queue = DueQueue()
    (only,) = workloads(1)
    for seconds in (10, 5, 20):
        queue.schedule(only, START + timedelta(seconds=seconds))
    assert list(queue.pop_due(START + timedelta(seconds=19))) == []
    assert list(queue.pop_due(START + timedelta(seconds=20))) == [only]
    assert queue.next_due() is None


def test_rescheduling_thousands_keeps_about_one_entry_each_and_the_order() -> None:
    """2,000 workloads scheduled three times each (6,000 entries pushed) leave at most two entries per workload,
    and they come due once each, in the order of their last moments."""
    queue = DueQueue()
    many = workloads(2000)
    last: dict[int, datetime] = {}
    for round_ in range(3):
        for n, workload in enumerate(many):
            last[id(workload)] = START + timedelta(seconds=(n * 7919 + round_ * 13) % 5000)
            queue.schedule(workload, last[id(workload)])
    assert len(queue) <= 2 * len(many)
    due = list(queue.pop_due(START + timedelta(hours=2)))
    assert len(due) == len(many)
    assert {id(w) for w in due} == {id(w) for w in many}
    moments = [last[id(w)] for w in due]
    assert moments == sorted(moments)
    assert queue.next_due() is None


def test_a_cancelled_workload_never_comes_due() -> None:
    """Scheduling None cancels: the workload is not returned, even after many others were compacted away."""
    queue = DueQueue()
    many = workloads(500)
    for workload in many:
        queue.schedule(workload, START + timedelta(seconds=1))
    for workload in many[::2]:
        queue.schedule(workload, None)
    assert list(queue.pop_due(START + timedelta(seconds=1))) == many[1::2]
