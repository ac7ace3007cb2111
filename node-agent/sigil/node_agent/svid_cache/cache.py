"""The SVID cache: the agent's real :class:`~sigil.node_agent.identity_source.IdentitySource`.

It issues a workload's X509-SVIDs the first time the workload asks (requests arriving together go to the issuer as
one batch), rotates them before half-life (``rotation.py``: a first SVID anywhere in 10-50% of its life, to spread
a burst), early when the bundle long poll names their signer as tainted, and drops them once the workload is gone:
no open stream and no call for ``idle_timeout``, or its pod deleted (:meth:`forget_pod`). It renews the agent's own
SVID the same way. The asking is ``issuance.py``'s, the
timing ``scheduler.py``'s (one task that sleeps until the next due moment, never polling; tests drive it with an
injected clock and :meth:`run_due`); this class is the face the Workload API sees and the owner of those parts.

When the issuer is unreachable, attempts back off exponentially up to ``backoff_max``; what is cached and still
valid keeps being served, and an SVID is dropped from every answer the moment it expires (SPIFFE: never serve an
expired SVID), which the scheduler wakes up for. Every change notifies :attr:`changes`, once per batch.

When the issuer refuses the agent's own SVID on any of these calls (evicted, superseded, ...), the agent identity
is told (``upstream/agent_svid.py``) and the scheduler wakes to attest again; meanwhile the cache serves what it has, as
while the issuer is away.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import structlog

from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.client import BundleUpdate, IssuerApi
from sigil.kit import Service, TaskOwner
from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.errors import (
    IdentityUnavailableError,
    NotEntitledError,
)
from sigil.node_agent.identity_source import (
    ChangeFeed,
    TrustBundles,
    WorkloadJwtSvid,
    WorkloadX509Svid,
)
from sigil.node_agent.rotation import Backoff, IssuerHealth
from sigil.node_agent.settings import RotationSettings
from sigil.node_agent.svid_cache.issuance import X509Issuance
from sigil.node_agent.svid_cache.jwt_cache import JwtSvidCache
from sigil.node_agent.svid_cache.scheduler import Scheduler
from sigil.node_agent.svid_cache.workload import (
    Workload,
    workload_of,
)
from sigil.node_agent.svid_cache.workload_table import WorkloadTable
from sigil.node_agent.upstream.agent_svid import AgentIdentity
from sigil.node_agent.upstream.bundle_sync import BundleSync

__all__ = ["SvidCache"]

_log = structlog.get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SvidCache(Service):
    """Issues, caches and rotates SVIDs; ``async with SvidCache(...)`` starts and stops its tasks."""

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
        self._federated: frozenset[TrustDomain] = frozenset()
        self._health = IssuerHealth(self._new_backoff(), clock)
        self._table = WorkloadTable(idle_timeout=self._settings.idle_timeout, health=self._health)
        self._issuance = X509Issuance(
            issuer.batch_x509_svids,
            table=self._table,
            health=self._health,
            changes=self._changes,
            settings=self._settings,
            clock=clock,
            rng=self._rng,
            on_failure=self._call_failed,
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
        self._scheduler = Scheduler(
            table=self._table,
            issuance=self._issuance,
            identity=identity,
            health=self._health,
            changes=self._changes,
            clock=clock,
            on_unreachable=self._unreachable,
        )
        self._tasks = TaskOwner("svid cache")

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
            self._spawn(self._scheduler.run(), "sigil-svid-scheduler")
            self._spawn(self._bundles.run(), "sigil-bundle-long-poll")

    async def aclose(self) -> None:
        """Cancel and await every task the cache owns; a background task that crashed is raised here."""
        try:
            await self._tasks.aclose()
        finally:
            await self._issuance.aclose()

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
        return self._issuance.batches_sent

    def wake(self) -> None:
        """Re-check what is due now (after a test moved its clock)."""
        self._scheduler.wake()

    def next_wakeup(self) -> datetime | None:
        """The next moment something falls due (an SVID to rotate or drop, the agent SVID to renew)."""
        return self._scheduler.next_wakeup()

    async def run_due(self) -> None:
        """Do everything due by now (see :class:`~sigil.node_agent.svid_cache.scheduler.Scheduler`)."""
        await self._scheduler.run_due()

    def forget_pod(self, uid: str) -> None:
        """The pod was deleted: drop its SVIDs at once."""
        slot = self._table.get(("pod", uid))
        if slot is not None:
            self._table.drop(slot, "pod deleted")
            self._changes.notify()

    # -- internals ----------------------------------------------------------------------------------------

    def _agent_refused(self, err: BaseException) -> None:
        """Tell the agent identity what a call met; wake the scheduler if the agent must attest again."""
        if self._identity is not None and self._identity.refused(err):
            self._scheduler.wake()

    def _bundle_answered(self, err: BaseException | None) -> None:
        if err is None:
            if self._identity is not None:
                self._identity.accepted()
        else:
            self._agent_refused(err)

    def _call_failed(self, err: BaseException) -> None:
        """A call for workload SVIDs failed as a whole: the agent may be refused, and the issuer backs off."""
        self._agent_refused(err)
        self._unreachable()

    def _unreachable(self) -> None:
        delay = self._health.failed()
        _log.warning("issuer unreachable; backing off", retry_in_s=round(delay.total_seconds(), 3))

    async def _slot(self, workload: WorkloadAttestation) -> Workload:
        now = self._clock()
        slot = self._table.touch(workload, now)
        if slot.valid(now) or (slot.denied_until is not None and now < slot.denied_until):
            return slot
        if self._health.down():
            raise IdentityUnavailableError("the issuer is unreachable; retrying with backoff")
        await self._issuance.first(slot)
        return slot

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
            if self._identity is not None and agent is not None and agent.svid.signer_ids & tainted:
                self._identity.renew_now()
        if self._identity is not None:
            self._spawn(self._identity.store_bundle(update.bundle), "sigil-store-bundle")
        self._changes.notify()
        self._scheduler.wake()
