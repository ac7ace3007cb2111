"""The SVID cache's one scheduler: at each moment something falls due, renew, drop or rotate what is due.

Nothing here polls. The workload table keeps a heap of due moments (``workload_table.py``), and the agent identity
knows when its own SVID renews (``upstream/agent_svid.py``); the scheduler sleeps until the earlier of the two, or
until :meth:`Scheduler.wake` (a bundle update, a refused agent, a test that moved its clock), and re-reads the clock
at least every ``_MAX_SLEEP`` seconds so that a jump of the wall clock cannot strand it. Tests drive it with an
injected clock and :meth:`Scheduler.run_due` instead of the loop.

While the issuer is away (``IssuerHealth``) nothing is rotated or renewed; an SVID is still dropped from every
answer the moment it expires (SPIFFE: never serve an expired SVID), which is why expiry is a due moment too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from sigil.ca.errors import SigilError
from sigil.node_agent.errors import AgentAttestationError
from sigil.node_agent.identity_source import ChangeFeed
from sigil.node_agent.rotation import IssuerHealth
from sigil.node_agent.svid_cache.issuance import X509Issuance
from sigil.node_agent.svid_cache.workload import Workload
from sigil.node_agent.svid_cache.workload_table import WorkloadTable
from sigil.node_agent.upstream.agent_svid import AgentIdentity

__all__ = ["Scheduler"]

_log = structlog.get_logger(__name__)
# The scheduler re-reads the clock at least this often, so a wall-clock jump cannot strand it.
_MAX_SLEEP = 30.0


class Scheduler:
    """Does what falls due in ``table`` and the agent identity's renewal; :meth:`run` is the loop."""

    def __init__(
        self,
        *,
        table: WorkloadTable,
        issuance: X509Issuance,
        identity: AgentIdentity | None,
        health: IssuerHealth,
        changes: ChangeFeed,
        clock: Callable[[], datetime],
        on_unreachable: Callable[[], None],
    ) -> None:
        self._table = table
        self._issuance = issuance
        self._identity = identity
        self._health = health
        self._changes = changes
        self._clock = clock
        self._on_unreachable = on_unreachable
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def wake(self) -> None:
        """Re-check what is due now."""
        self._wake.set()

    def next_wakeup(self) -> datetime | None:
        """The next moment something falls due (an SVID to rotate or drop, the agent SVID to renew)."""
        candidates = [self._table.next_due()]
        if self._identity is not None and self._identity.renew_at is not None:
            candidates.append(self._health.not_before(self._identity.renew_at))
        return min((c for c in candidates if c is not None), default=None)

    async def run(self) -> None:
        """Run what is due, sleep until the next due moment or a wake-up, forever."""
        while True:
            self._wake.clear()
            await self.run_due()
            wakeup = self.next_wakeup()
            timeout = _MAX_SLEEP
            if wakeup is not None:
                timeout = min(max((wakeup - self._clock()).total_seconds(), 0.001), _MAX_SLEEP)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation that lands as the wake-up
            # completes (https://github.com/python/cpython/issues/86296), and aclose() then waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def run_due(self) -> None:
        """Do everything due by now: renew the agent SVID, drop expired and idle SVIDs, rotate in batches."""
        async with self._lock:
            now = self._clock()
            await self._renew_agent_if_due(now)
            changed = False
            rotate: list[Workload] = []
            for slot in self._table.pop_due(now):
                before = len(slot.svids)
                slot.svids = slot.valid(now)
                changed |= len(slot.svids) != before
                if not self._table.alive(slot, now):
                    self._table.drop(slot, "idle")
                    changed = True
                elif (
                    # rotate_at stays set when the SVIDs expired while the issuer was away: a workload still in
                    # use is re-issued in the first batch after the outage, not only when it asks again.
                    slot.rotate_at is not None
                    and slot.rotate_at <= now
                    and not self._health.down()
                    and not self._issuance.busy(slot.key)
                ):
                    rotate.append(slot)
                else:
                    self._table.plan(slot, now)
            if rotate:
                changed |= await self._issuance.rotate(rotate)
            if changed:
                self._changes.notify()

    async def _renew_agent_if_due(self, now: datetime) -> None:
        identity = self._identity
        if identity is None or identity.renew_at is None or identity.renew_at > now:
            return
        if self._health.down():
            return
        try:
            await identity.renew()
        except AgentAttestationError as err:
            # The issuer answered and refused the agent (the identity logged why and when it tries again); it
            # refuses every other call of the agent too, so those wait a backoff as well.
            self._health.failed()
            _log.warning("agent SVID renewal failed", error=str(err))
        except SigilError as err:
            self._on_unreachable()
            _log.warning("agent SVID renewal failed", error=str(err))
        else:
            self._health.succeeded()
