"""Getting X509-SVIDs from the issuer for cached workloads: the first issuance and rotations, in batches.

The SVID cache (``cache.py``) decides *when* a workload needs SVIDs; this module does the asking. A fresh key is
made for every issuance and rotation, off the event loop, and only its CSR leaves the agent. First requests that
arrive together share one batch (``batcher.py``), and concurrent callers of one workload share one request; a
rotation sends every workload due at once as one batch. What the issuer answers is sorted here, once: SVIDs are
adopted, a refusal of the workload denies it for ``denied_retry``, and a "not now" keeps what it has and tries again
after a backoff. A failure of the whole call is reported to the cache (``on_failure``), which backs off.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime

import structlog

from sigil.ca.errors import SigilError
from sigil.issuer.client import X509SvidResult
from sigil.node_agent.errors import IdentityUnavailableError
from sigil.node_agent.identity_source import ChangeFeed
from sigil.node_agent.rotation import Backoff, IssuerHealth
from sigil.node_agent.settings import RotationSettings
from sigil.node_agent.svid_cache.batcher import IssueBatch, X509Batcher
from sigil.node_agent.svid_cache.workload import Workload, WorkloadKey, new_keys
from sigil.node_agent.svid_cache.workload_table import WorkloadTable

__all__ = ["X509Issuance"]

_log = structlog.get_logger(__name__)


class X509Issuance:
    """Issues and rotates the X509-SVIDs of the workloads in ``table``; owns its in-flight requests."""

    def __init__(
        self,
        batch: IssueBatch,
        *,
        table: WorkloadTable,
        health: IssuerHealth,
        changes: ChangeFeed,
        settings: RotationSettings,
        clock: Callable[[], datetime],
        rng: random.Random,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self._table = table
        self._health = health
        self._changes = changes
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._on_failure = on_failure
        self._inflight: dict[WorkloadKey, asyncio.Task[None]] = {}
        self._batcher = X509Batcher(batch, window=settings.batch_window.total_seconds())

    @property
    def batches_sent(self) -> int:
        """X509-SVID batch requests sent to the issuer so far."""
        return self._batcher.batches_sent

    def busy(self, key: WorkloadKey) -> bool:
        """True while a first issuance of this workload is under way."""
        return key in self._inflight

    async def aclose(self) -> None:
        """Cancel and await the requests in flight, then the batcher's."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._batcher.aclose()

    async def first(self, slot: Workload) -> None:
        """Issue the slot's first SVIDs; callers of one workload share one request.

        Raises :class:`IdentityUnavailableError` when the issuer could not answer ("not now", never "no").
        """
        key = slot.key
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._issue_first(slot), name="sigil-first-issuance")
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        try:
            await asyncio.shield(task)
        except SigilError as err:
            raise IdentityUnavailableError(str(err)) from err

    async def _issue_first(self, slot: Workload) -> None:
        ((key_der, csr),) = await asyncio.to_thread(new_keys, 1)
        try:
            result = await self._batcher.submit(slot.request(csr))
        except SigilError as err:
            self._on_failure(err)
            self._table.plan(slot, self._clock())
            raise
        self._health.succeeded()
        refusal = result.refusal
        if refusal is not None and not refusal.refuses_workload:
            # "Not now" for this workload (Unavailable, the client retries), never "no" (PermissionDenied).
            raise IdentityUnavailableError(str(result.error))
        self._apply(slot, result, key_der)
        self._changes.notify()

    async def rotate(self, slots: list[Workload]) -> bool:
        """New SVIDs for every slot, in one batch; False (and each slot re-planned) when the call failed."""
        pairs = await asyncio.to_thread(new_keys, len(slots))
        now = self._clock()
        try:
            results = await self._batcher.submit_many(
                [slot.request(csr) for slot, (_, csr) in zip(slots, pairs, strict=True)]
            )
        except SigilError as err:
            self._on_failure(err)
            _log.warning("rotation postponed", workloads=len(slots), error=str(err))
            for slot in slots:
                self._table.plan(slot, now)
            return False
        self._health.succeeded()
        for slot, (key_der, _), result in zip(slots, pairs, results, strict=True):
            self._apply(slot, result, key_der)
        return True

    def _apply(self, slot: Workload, result: X509SvidResult, key_der: bytes) -> None:
        now = self._clock()
        refusal = result.refusal
        if refusal is not None and not refusal.refuses_workload:
            # Not a "no" about this workload (the issuer is busy, say): keep what it has, try again later.
            _log.warning("issuer could not serve a workload", error=str(result.error))
            backoff = Backoff(
                initial=self._settings.backoff_initial,
                maximum=self._settings.backoff_max,
                rng=self._rng,
            )
            slot.rotate_at = now + backoff.next_delay()
        elif refusal is not None or not result.svids:
            slot.deny(now + self._settings.denied_retry)
            _log.info("the issuer entitles this workload to nothing", workload=slot.key[0])
        else:
            slot.adopt(result.svids, key_der, now=now, rng=self._rng)
        if slot in self._table:
            self._table.plan(slot, now)
