"""The cached workloads, who is streaming, and when each falls due: the SVID cache's bookkeeping.

Kept apart from the cache so that the rules about *when* (rotate at the drawn point, retry after the issuer's
backoff, wake at the first expiry, check idleness after ``idle_timeout``) live in one small place, and the scheduler
only decides *what* to do when a workload falls due. Everything here runs on the event loop and never blocks.

The :class:`DueQueue` is a heap of (moment, workload) so that the scheduler finds the next wake-up, and the work due
now, in logarithmic time: ten thousand cached workloads must not mean ten thousand comparisons per tick.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import structlog

from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.rotation import IssuerHealth
from sigil.node_agent.svid_cache.workload import (
    Workload,
    WorkloadKey,
    key_of,
    workload_of,
)

__all__ = ["DueQueue", "WorkloadTable"]

_log = structlog.get_logger(__name__)
# An idle check is never scheduled sooner than this, so a slot is not re-examined in a tight loop.
_MIN_RECHECK = timedelta(seconds=1)
# Below this many stale entries the heap is never rebuilt: a small heap's waste is not worth a pass over it.
_COMPACT_AT = 64


class WorkloadTable:
    """Workload slots by key, with their due moments and open stream counts."""

    def __init__(self, *, idle_timeout: timedelta, health: IssuerHealth) -> None:
        self._idle_timeout = idle_timeout
        self._health = health
        self._slots: dict[WorkloadKey, Workload] = {}
        self._queue = DueQueue()
        self._streams: Counter[WorkloadKey] = Counter()

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, slot: Workload) -> bool:
        return self._slots.get(slot.key) is slot

    def slots(self) -> Iterator[Workload]:
        return iter(list(self._slots.values()))

    def get(self, key: WorkloadKey) -> Workload | None:
        return self._slots.get(key)

    def touch(self, attestation: WorkloadAttestation, now: datetime) -> Workload:
        """The caller's slot (created empty if new), marked as seen now."""
        key = key_of(attestation)
        slot = self._slots.get(key)
        if slot is None:
            # The slot's own key (sharing its selector strings) is the dict's key too: one copy per workload.
            slot = workload_of(attestation, now)
            self._slots[slot.key] = slot
            self.plan(slot, now)
        slot.last_seen = now
        return slot

    def stream_opened(self, attestation: WorkloadAttestation) -> WorkloadKey:
        key = key_of(attestation)
        self._streams[key] += 1
        return key

    def stream_closed(self, key: WorkloadKey, now: datetime) -> None:
        self._streams[key] -= 1
        if self._streams[key] <= 0:
            del self._streams[key]
        slot = self._slots.get(key)
        if slot is not None:
            slot.last_seen = now  # idleness counts from when the last stream closed

    def alive(self, slot: Workload, now: datetime) -> bool:
        """A stream is open, or the workload asked within ``idle_timeout``."""
        return self._streams[slot.key] > 0 or now - slot.last_seen < self._idle_timeout

    def drop(self, slot: Workload, why: str) -> None:
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        self._queue.schedule(slot, None)
        _log.info("dropped a workload's SVIDs", workload=slot.key[0], why=why)

    def plan(self, slot: Workload, now: datetime) -> None:
        """Schedule the slot's next due moment: rotation (or the end of a backoff), expiry, or an idle check."""
        if slot.rotate_at is None:
            idle_check = max(slot.last_seen + self._idle_timeout, now + _MIN_RECHECK)
            self._queue.schedule(slot, max(idle_check, slot.denied_until or now))
            return
        when = self._health.not_before(slot.rotate_at)
        expiry = slot.earliest_expiry()
        if expiry is not None and expiry < when:
            when = expiry
        self._queue.schedule(slot, when)

    def due_now(self, slot: Workload, now: datetime) -> None:
        """Make the slot due at once (its signer was tainted)."""
        slot.rotate_at = now
        self._queue.schedule(slot, now)

    def next_due(self) -> datetime | None:
        return self._queue.next_due()

    def pop_due(self, now: datetime) -> Iterator[Workload]:
        return self._queue.pop_due(now)


class DueQueue:
    """Moments at which a workload needs attention, earliest first; stale entries are skipped on the way out.

    A re-scheduled workload leaves its old entry behind (a heap cannot remove from the middle); every new workload
    leaves one (its idle check, replaced by its rotation once issued). When stale entries are as many as live ones the
    heap is rebuilt from the live ones, as asyncio does with cancelled timers (``base_events.py``), so that the
    queue stays about one entry per workload.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Workload, int]] = []
        self._order = itertools.count()
        self._stale = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, workload: Workload, when: datetime | None) -> None:
        """Make ``when`` the workload's (only) next due moment; None cancels it."""
        if workload.due_at is not None:
            self._stale += 1  # its entry in the heap is live until now
        workload.generation += 1
        workload.due_at = when
        if when is not None:
            heapq.heappush(self._heap, (when, next(self._order), workload, workload.generation))
        if self._stale > _COMPACT_AT and 2 * self._stale >= len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].generation == entry[3]]
            heapq.heapify(self._heap)
            self._stale = 0

    def next_due(self) -> datetime | None:
        """The earliest live due moment."""
        while self._heap:
            when, _, workload, generation = self._heap[0]
            if workload.generation == generation:
                return when
            heapq.heappop(self._heap)
            self._stale -= 1
        return None

    def pop_due(self, now: datetime) -> Iterator[Workload]:
        """Every workload due at ``now`` or before, each once, removed from the queue."""
        while self._heap and self._heap[0][0] <= now:
            _, _, workload, generation = heapq.heappop(self._heap)
            if workload.generation == generation:
                workload.due_at = None
                yield workload
            else:
                self._stale -= 1
