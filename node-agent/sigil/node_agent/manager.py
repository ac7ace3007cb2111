"""The SVID manager: the agent's real :class:`~sigil.node_agent.identity.IdentitySource`.

It issues a workload's X509-SVIDs the first time the workload asks (requests arriving together go to the issuer as
one batch), rotates them at half-life ±10% (``rotation.py``), early when the bundle long poll names their signer as
tainted, and drops them once the workload is gone: no open stream and no call for ``idle_timeout``, or its pod
deleted (:meth:`forget_pod`). It renews the agent's own SVID the same way. One scheduler task sleeps until the next
moment something falls due (a heap, ``svid_cache.DueQueue``), never polling; tests drive it with an injected clock
and :meth:`run_due`.

When the issuer is unreachable, attempts back off exponentially up to ``backoff_max``; what is cached and still
valid keeps being served, and an SVID is dropped from every answer the moment it expires (SPIFFE: never serve an
expired SVID), which the scheduler wakes up for. Every change notifies :attr:`changes`, once per batch.

When the issuer refuses the agent's own SVID on any of these calls (evicted, superseded, ...), the agent identity
is told (``agent_svid.py``) and the scheduler wakes to attest again; meanwhile the cache serves what it has, as
while the issuer is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import structlog

from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.client import BundleUpdate, X509SvidResult
from sigil.kit import Service, TaskOwner
from sigil.node_agent.agent_svid import AgentIdentity
from sigil.node_agent.batcher import X509Batcher
from sigil.node_agent.bundle_sync import BundleSync
from sigil.node_agent.errors import (
    AgentAttestationError,
    IdentityUnavailableError,
    NotEntitledError,
)
from sigil.node_agent.identity import ChangeFeed, TrustBundles, WorkloadJwtSvid, WorkloadX509Svid
from sigil.node_agent.issuer_link import IssuerApi, is_denial
from sigil.node_agent.jwt_cache import JwtSvidCache
from sigil.node_agent.rotation import Backoff, IssuerHealth
from sigil.node_agent.selectors import WorkloadAttestation
from sigil.node_agent.settings import RotationSettings
from sigil.node_agent.svid_cache import (
    Workload,
    WorkloadKey,
    new_keys,
    signers_of,
    workload_of,
)
from sigil.node_agent.workload_table import WorkloadTable

__all__ = ["SvidManager"]

_log = structlog.get_logger(__name__)
# The scheduler re-reads the clock at least this often, so a wall-clock jump cannot strand it.
_MAX_SLEEP = 30.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SvidManager(Service):
    """Issues, caches and rotates SVIDs; ``async with SvidManager(...)`` starts and stops its tasks."""

    def __init__(
        self,
        issuer: IssuerApi,
        *,
        settings: RotationSettings | None = None,
        identity: AgentIdentity | None = None,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._issuer = issuer
        self._settings = settings or RotationSettings()
        self._identity = identity
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- rotation jitter, not a secret
        self._changes = ChangeFeed()
        self._inflight: dict[WorkloadKey, asyncio.Task[None]] = {}
        self._federated: frozenset[TrustDomain] = frozenset()
        self._health = IssuerHealth(self._new_backoff(), clock)
        self._table = WorkloadTable(idle_timeout=self._settings.idle_timeout, health=self._health)
        self._batcher = X509Batcher(
            issuer.batch_x509_svids, window=self._settings.batch_window.total_seconds()
        )
        self._jwts = JwtSvidCache(
            issuer,
            clock=clock,
            on_unreachable=self._unreachable,
            on_reachable=self._health.succeeded,
            on_refused=self._agent_refused,
        )
        self._bundles = BundleSync(
            issuer,
            wait=self._settings.bundle_wait.total_seconds(),
            backoff=self._new_backoff(),
            on_update=self._bundle_updated,
            on_answer=self._bundle_answered,
        )
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks = TaskOwner("svid manager")

    def _new_backoff(self) -> Backoff:
        s = self._settings
        return Backoff(initial=s.backoff_initial, maximum=s.backoff_max, rng=self._rng)

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Resume or attest the agent, fetch the bundles, and (with ``background``) start the scheduler."""
        if self._identity is not None:
            await self._identity.start()
        try:
            await self._bundles.refresh()
        except SigilError as err:
            self._bundle_answered(err)
            _log.warning("no bundle update at start; serving the stored bundle", error=str(err))
        if background:
            self._spawn(self._schedule_loop(), "sigil-svid-scheduler")
            self._spawn(self._bundles.run(), "sigil-bundle-long-poll")

    async def aclose(self) -> None:
        """Cancel and await every task the manager owns; a background task that crashed is raised here."""
        # First issuances are not background work: their callers await them and get their errors.
        first = list(self._inflight.values())
        for task in first:
            task.cancel()
        try:
            await self._tasks.aclose()
        finally:
            await asyncio.gather(*first, return_exceptions=True)
            await self._batcher.aclose()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coroutine, name=name)

    # -- what the Workload API asks -----------------------------------------------------------------------

    @property
    def changes(self) -> ChangeFeed:
        return self._changes

    def bundles(self) -> TrustBundles:
        return self._bundles.bundles

    async def x509_svids(self, workload: WorkloadAttestation) -> Sequence[WorkloadX509Svid]:
        """The caller's valid SVIDs, issuing them first if it is new; never an expired one."""
        slot = await self._slot(workload)
        federated = self._federated
        valid = slot.valid(self._clock())
        if not federated:
            return [c.svid for c in valid]
        return [dataclasses.replace(c.svid, federates_with=federated) for c in valid]

    async def entitlements(self, workload: WorkloadAttestation) -> Sequence[SpiffeId]:
        return [svid.spiffe_id for svid in await self.x509_svids(workload)]

    async def jwt_svid(
        self, workload: WorkloadAttestation, spiffe_id: SpiffeId, *, audiences: Sequence[str]
    ) -> WorkloadJwtSvid:
        """A JWT-SVID for ``spiffe_id``, which must be one of the caller's own identities.

        Checked here and not only by the Workload API: the JWT cache is shared by every workload holding an ID, so
        a token cached for one workload must never answer another that merely names the same ID.
        """
        if spiffe_id not in await self.entitlements(workload):
            raise NotEntitledError(str(spiffe_id))
        slot = workload_of(workload, self._clock())
        return await self._jwts.get(slot, spiffe_id, audiences, issuer_down=self._health.down())

    @asynccontextmanager
    async def streaming(self, workload: WorkloadAttestation) -> AsyncIterator[None]:
        key = self._table.stream_opened(workload)
        try:
            yield
        finally:
            self._table.stream_closed(key, self._clock())

    # -- operations ---------------------------------------------------------------------------------------

    @property
    def cached_workloads(self) -> int:
        return len(self._table)

    @property
    def issuer_batches(self) -> int:
        """X509-SVID batch requests sent to the issuer so far."""
        return self._batcher.batches_sent

    def wake(self) -> None:
        """Re-check what is due now (after a test moved its clock)."""
        self._wake.set()

    def forget_pod(self, uid: str) -> None:
        """The pod was deleted: drop its SVIDs at once."""
        slot = self._table.get(("pod", uid))
        if slot is not None:
            self._table.drop(slot, "pod deleted")
            self._changes.notify()

    def next_wakeup(self) -> datetime | None:
        """The next moment something falls due (an SVID to rotate or drop, the agent SVID to renew)."""
        candidates = [self._table.next_due()]
        if self._identity is not None and self._identity.renew_at is not None:
            candidates.append(self._health.not_before(self._identity.renew_at))
        return min((c for c in candidates if c is not None), default=None)

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
                    slot.svids
                    and slot.rotate_at is not None
                    and slot.rotate_at <= now
                    and not self._health.down()
                    and slot.key not in self._inflight
                ):
                    rotate.append(slot)
                else:
                    self._table.plan(slot, now)
            if rotate:
                changed |= await self._rotate(rotate)
            if changed:
                self._changes.notify()

    # -- internals ----------------------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            self._wake.clear()
            await self.run_due()
            wakeup = self.next_wakeup()
            timeout = _MAX_SLEEP
            if wakeup is not None:
                timeout = min(max((wakeup - self._clock()).total_seconds(), 0.001), _MAX_SLEEP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _agent_refused(self, err: BaseException) -> None:
        """Tell the agent identity what a call met; wake the scheduler if the agent must attest again."""
        if self._identity is not None and self._identity.refused(err):
            self._wake.set()

    def _bundle_answered(self, err: BaseException | None) -> None:
        if err is None:
            if self._identity is not None:
                self._identity.accepted()
        else:
            self._agent_refused(err)

    def _unreachable(self) -> None:
        delay = self._health.failed()
        _log.warning("issuer unreachable; backing off", retry_in_s=round(delay.total_seconds(), 3))

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
            self._unreachable()
            _log.warning("agent SVID renewal failed", error=str(err))
        else:
            self._health.succeeded()

    async def _slot(self, workload: WorkloadAttestation) -> Workload:
        now = self._clock()
        slot = self._table.touch(workload, now)
        key = slot.key
        if slot.valid(now) or (slot.denied_until is not None and now < slot.denied_until):
            return slot
        if self._health.down():
            raise IdentityUnavailableError("the issuer is unreachable; retrying with backoff")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._issue_first(slot), name="sigil-first-issuance")
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        try:
            await asyncio.shield(task)
        except SigilError as err:
            raise IdentityUnavailableError(str(err)) from err
        return slot

    async def _issue_first(self, slot: Workload) -> None:
        ((key_der, csr),) = await asyncio.to_thread(new_keys, 1)
        try:
            result = await self._batcher.submit(slot.request(csr))
        except SigilError as err:
            self._agent_refused(err)
            self._unreachable()
            self._table.plan(slot, self._clock())
            raise
        self._health.succeeded()
        if result.error is not None and not is_denial(result.error):
            # "Not now" for this workload (Unavailable, the client retries), never "no" (PermissionDenied).
            raise IdentityUnavailableError(str(result.error))
        self._apply(slot, result, key_der)
        self._changes.notify()

    async def _rotate(self, slots: list[Workload]) -> bool:
        pairs = await asyncio.to_thread(new_keys, len(slots))
        now = self._clock()
        try:
            results = await self._batcher.submit_many(
                [slot.request(csr) for slot, (_, csr) in zip(slots, pairs, strict=True)]
            )
        except SigilError as err:
            self._agent_refused(err)
            self._unreachable()
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
        if result.error is not None and not is_denial(result.error):
            # Not a "no" about this workload (the issuer is busy, say): keep what it has, try again later.
            _log.warning("issuer could not serve a workload", error=str(result.error))
            slot.rotate_at = now + self._new_backoff().next_delay()
        elif result.error is not None or not result.svids:
            slot.deny(now + self._settings.denied_retry)
            _log.info("the issuer entitles this workload to nothing", workload=slot.key[0])
        else:
            slot.adopt(result.svids, key_der, now=now, rng=self._rng)
        if slot in self._table:
            self._table.plan(slot, now)

    def _bundle_updated(self, update: BundleUpdate) -> None:
        self._federated = frozenset(update.federated)
        tainted = update.tainted_authority_ids
        if tainted:
            now = self._clock()
            early = [s for s in self._table.slots() if s.svids and s.signed_by_any(tainted)]
            for slot in early:
                self._table.due_now(slot, now)
            dropped = self._jwts.drop_signed_by(tainted)
            if early or dropped:
                _log.info("rotating early: signer tainted", x509=len(early), jwt=dropped)
            agent = self._issuer.agent_svid
            if (
                self._identity is not None
                and agent is not None
                and signers_of(agent.svid.chain) & tainted
            ):
                self._identity.renew_now()
        if self._identity is not None:
            self._spawn(self._identity.store_bundle(update.bundle), "sigil-store-bundle")
        self._changes.notify()
        self._wake.set()
