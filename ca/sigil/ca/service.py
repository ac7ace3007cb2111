"""The certificate authority as one object: the datastore, the keys, rotation and minting behind one face.

Each process keeps an in-memory snapshot of the authorities (refreshed by :meth:`refresh`, which the rotator calls
every tick), so minting costs no database read; every change is made in a locked transaction and then re-read, so
replicas agree on the active authority within one tick and never sign with a revoked one for longer.

With ``ca.key_store: database`` the authority rows are sealed under the key-encryption key (``datastore/rowseal.py``)
and a row that does not verify is invisible here: not in the bundle, not a signer, not counted by rotation
(:mod:`sigil.ca.adoption` seals a database's rows from before sealing, once). The steps a locked transaction takes
are in :mod:`sigil.ca.authority_steps`.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self, TypeVar

from cryptography import x509

from sigil.ca.adoption import seal_unsealed_rows
from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus, Signer
from sigil.ca.authority_steps import (
    activate_authority,
    commit_bundle,
    prepare_authority,
    revoke_authority,
    scheduled_rotation,
    taint_authority,
)
from sigil.ca.bundle import TrustBundle
from sigil.ca.csr import verify_csr_keys
from sigil.ca.datastore.journal import Outstanding
from sigil.ca.datastore.store import Datastore
from sigil.ca.datastore.transaction import Transaction
from sigil.ca.errors import AuthorityError, MalformedCsrError, NoActiveAuthorityError
from sigil.ca.jwtsvid import JwtSvid, mint_jwt_svid
from sigil.ca.keys import PublicKey
from sigil.ca.keystore import (
    KeyStore,
)
from sigil.ca.minting import (
    CsrGrants,
    X509Request,
    check_member,
    journal_entries,
    mint_x509_batch,
    mint_x509_per_csr,
)
from sigil.ca.settings import CaSettings
from sigil.ca.signing_pool import SigningPool
from sigil.ca.snapshot import Snapshot, read_snapshot
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.storage import open_storage
from sigil.ca.upstream import UpstreamCa
from sigil.ca.upstream_rotation import resolve_upstream
from sigil.ca.x509svid import X509Svid

__all__ = ["CertificateAuthority", "Clock", "X509Request", "utc_now"]

Clock = Callable[[], datetime]
_T = TypeVar("_T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class CertificateAuthority:
    """Open with :meth:`open`, close with :meth:`close`."""

    def __init__(
        self,
        settings: CaSettings,
        store: Datastore,
        keys: KeyStore,
        *,
        clock: Clock = utc_now,
        upstream: UpstreamCa | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._keys = keys
        self._clock = clock
        self._upstream = upstream
        self._snapshot = Snapshot()
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        self._changed = asyncio.Condition()
        self._refreshing = asyncio.Lock()
        self._pool: SigningPool | None = None
        #: Revoked authorities whose key this process has destroyed (or found destroyed).
        self._destroyed: set[str] = set()

    @classmethod
    async def open(
        cls,
        settings: CaSettings,
        *,
        clock: Clock = utc_now,
        extra_migrations: Sequence[Path] = (),
    ) -> Self:
        """Open the datastore, load the upstream CA if configured, and make sure both kinds can sign.

        ``extra_migrations`` are Alembic version directories of components that keep their own tables in the same
        database (the issuer's entries and tokens); they are applied with the CA's own.
        """
        store, keys, upstream = await open_storage(settings, extra_migrations=extra_migrations)
        ca = cls(settings, store, keys, clock=clock, upstream=upstream)
        try:
            if settings.signing_workers > 1:
                ca._pool = SigningPool(settings.signing_workers)
                await ca._pool.start()
            await seal_unsealed_rows(
                store,
                keys,
                upstream=upstream,
                key_encryption_key_file=settings.key_encryption_key_file,
                now=ca.now(),
                holder=ca._holder,
            )
            await ca.rotate()
        except BaseException:
            await ca.aclose()
            raise
        return ca

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self.store.aclose()

    @property
    def signing_pool(self) -> SigningPool | None:
        """The signing worker processes, when ``signing_workers`` is more than 1."""
        return self._pool

    @property
    def trust_domain(self) -> SpiffeId:
        return self.settings.trust_domain.id

    def now(self) -> datetime:
        return self._clock()

    # ------------------------------------------------------------------ state
    def authorities(self, kind: AuthorityKind | None = None) -> list[Authority]:
        return [a for a in self._snapshot.authorities if kind is None or a.kind is kind]

    def bundle(self) -> TrustBundle:
        if self._snapshot.bundle is None:
            raise NoActiveAuthorityError("x509")
        return self._snapshot.bundle

    def jwt_keys(self) -> Mapping[str, PublicKey]:
        return self.bundle().jwt_authorities

    def tainted_authority_ids(self) -> frozenset[str]:
        return frozenset(a.authority_id for a in self._snapshot.authorities if a.tainted)

    def signer(self, kind: AuthorityKind) -> Signer:
        return self._snapshot.signer(kind, self.now())

    async def refresh(self) -> TrustBundle:
        """Re-read the authorities and bundle sequence from the datastore."""
        # One at a time: a periodic refresh that read before a verb's commit must not land after the verb's own
        # refresh and put the stale state back (a revoked authority shown as old, a taint not seen).
        async with self._refreshing:
            previous = self._snapshot.bundle
            self._snapshot = await read_snapshot(
                self.store, self._keys, settings=self.settings, now=self.now()
            )
        bundle = self.bundle()
        if previous is None or previous.sequence != bundle.sequence:
            async with self._changed:
                self._changed.notify_all()
        return bundle

    async def wait_for_bundle(self, after_sequence: int) -> TrustBundle:
        """The bundle once its sequence passes ``after_sequence`` (callers bound the wait with a timeout)."""

        def moved() -> bool:
            return (
                self._snapshot.bundle is not None
                and self._snapshot.bundle.sequence > after_sequence
            )

        async with self._changed:
            await self._changed.wait_for(moved)
        return self.bundle()

    async def _commit_bundle(self, tx: Transaction, now: datetime) -> None:
        await commit_bundle(tx, now, settings=self.settings)

    @property
    def keys(self) -> KeyStore:
        return self._keys

    @property
    def upstream(self) -> UpstreamCa | None:
        """The upstream CA new X.509 authorities are signed under, as this process last resolved it."""
        return self._upstream

    async def run_step(
        self, step: Callable[[Transaction, datetime], Awaitable[_T]], *, upstream: bool = False
    ) -> _T:
        """Run an operator's ``step`` in a locked transaction, commit the bundle it leaves, and re-read.

        With ``upstream``, the upstream the datastore names is resolved again afterwards (an upstream rotation).
        """
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            result = await step(tx, now)
            await self._commit_bundle(tx, now)
            if upstream:
                self._upstream = await resolve_upstream(tx, self._upstream)
        await self.refresh()
        await self._destroy_revoked_keys()
        return result

    async def _destroy_revoked_keys(self) -> None:
        """Destroy the key of every revoked authority, once the revocation has committed.

        Only after the commit: a step that fails after revoking (a prepared authority replaced by a new one whose
        key cannot be written) must leave every key it did not revoke in place. And at every step, not just the
        one that revoked: a process killed between a commit and the destruction leaves the key behind, and the
        next step of the next process (:meth:`open` takes one) destroys it.
        """
        for authority in self._snapshot.authorities:
            if (
                authority.status is AuthorityStatus.REVOKED
                and authority.authority_id not in self._destroyed
            ):
                await self._keys.delete(authority.kind, authority.authority_id)
                self._destroyed.add(authority.authority_id)

    async def _prepare(self, tx: Transaction, kind: AuthorityKind, now: datetime) -> Authority:
        if kind is AuthorityKind.X509:
            # Another replica's `upstream prepare` moves every replica's next authority to the new upstream.
            self._upstream = await resolve_upstream(tx, self._upstream)
        return await prepare_authority(
            tx, kind, now, settings=self.settings, keys=self._keys, upstream=self._upstream
        )

    # ------------------------------------------------------------------ rotation
    async def rotate(self) -> list[str]:
        """Take the scheduled rotation steps (under the datastore's lock); returns what was done."""
        return await self.run_step(
            lambda tx, now: scheduled_rotation(tx, now, prepare=self._prepare)
        )

    async def prune_journal(self) -> int:
        """Drop journal rows of SVIDs expired for longer than ``journal_grace`` (the rotator's tick calls this).

        SPIRE likewise prunes what has expired from its CA journal; without it the journal grows by every SVID
        ever issued. Returns how many rows went.
        """
        return await self.store.prune_journal(self.now() - self.settings.journal_grace)

    # ------------------------------------------------------------------ manual verbs
    async def prepare(self, kind: AuthorityKind) -> Authority:
        """Prepare a new authority now (it joins the bundle; it signs once activated)."""
        return await self.run_step(lambda tx, now: self._prepare(tx, kind, now))

    async def activate(self, kind: AuthorityKind, authority_id: str) -> Authority:
        """Make the prepared authority the one that signs; the current one becomes old."""
        await self.run_step(lambda tx, now: activate_authority(tx, kind, authority_id, now))
        return self._find(authority_id)

    async def taint(self, kind: AuthorityKind, authority_id: str) -> int:
        """Mark an old authority as tainted; what it signed is due for re-issue. Returns how many SVIDs."""
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            count = await taint_authority(tx, kind, authority_id)
        await self.refresh()
        return count

    async def revoke(
        self, kind: AuthorityKind, authority_id: str, *, force: bool = False
    ) -> Authority:
        """Remove a tainted authority from the bundle for good, and destroy its key.

        Refused (:class:`~sigil.ca.errors.AuthorityInUseError`) while SVIDs it signed are unexpired and not yet
        replaced since the taint, unless ``force``.
        """
        await self.run_step(
            lambda tx, now: revoke_authority(tx, kind, authority_id, now, force=force)
        )
        await self._keys.delete(kind, authority_id)
        return self._find(authority_id)

    async def outstanding(self, authority_id: str) -> Outstanding:
        """The SVIDs revoking ``authority_id`` now would cut: unexpired, marked by a taint, not yet replaced."""
        self._find(authority_id)
        return await self.store.outstanding(authority_id, self.now())

    def _find(self, authority_id: str) -> Authority:
        for authority in self._snapshot.authorities:
            if authority.authority_id == authority_id:
                return authority
        raise AuthorityError(authority_id, "no such authority")

    # ------------------------------------------------------------------ minting
    async def mint_x509_svids(
        self, requests: Sequence[X509Request], *, holder: str | None = None
    ) -> list[X509Svid]:
        """Mint a batch: the signatures in a worker thread, the journal in one transaction.

        A request without a CSR or public key gets a key generated by the CA (``x509 mint``); otherwise the SVID
        certifies the caller's key and the CA never sees a private key. ``holder`` (the agent that asked, or the
        server for its own SVID) is journaled, so that a taint's re-issue can be followed per agent.
        """
        now = self.now()
        signer = self.signer(AuthorityKind.X509)
        if self._pool is None:
            minted = await asyncio.to_thread(
                mint_x509_batch, signer, requests, now, settings=self.settings
            )
        else:
            minted = await self._pool.mint(signer, requests, now, settings=self.settings)
        await self.store.record_issued(journal_entries(minted, now, holder=holder))
        return minted

    async def mint_x509_per_csr(
        self, batch: Sequence[CsrGrants], *, holder: str | None = None
    ) -> list[list[X509Svid] | MalformedCsrError]:
        """Mint an agent's batch: each item's SVIDs over its CSR's key, or why the CSR is refused.

        A CSR that does not verify refuses its own item, not the batch; an item without grants has its CSR checked
        and nothing minted. Each CSR is checked and its leaves signed in one call to a signing worker (or all of it
        in one thread); what was minted is journaled before this returns.
        """
        if not any(item.grants for item in batch):
            checked = await self.verify_csrs([item.csr for item in batch])
            return [[] if isinstance(key, bytes) else key for key in checked]
        now = self.now()
        signer = self.signer(AuthorityKind.X509)
        if self._pool is None:
            minted = await asyncio.to_thread(
                mint_x509_per_csr, signer, batch, now, settings=self.settings
            )
        else:
            minted = await self._pool.mint_per_csr(signer, batch, now, settings=self.settings)
        svids = [svid for item in minted if isinstance(item, list) for svid in item]
        await self.store.record_issued(journal_entries(svids, now, holder=holder))
        return minted

    async def verify_csrs(self, csrs: Sequence[bytes]) -> list[bytes | MalformedCsrError]:
        """Each CSR's verified key as SubjectPublicKeyInfo DER (for ``X509Request.spki``), or why it is refused.

        In the signing workers when there are some, otherwise in a thread: signature checks are CPU work.
        """
        if self._pool is not None:
            return await self._pool.verify_csrs(csrs)
        answers = await asyncio.to_thread(verify_csr_keys, csrs)
        return [a if isinstance(a, bytes) else MalformedCsrError(a) for a in answers]

    async def mint_x509_svid(
        self,
        spiffe_id: SpiffeId,
        *,
        csr: bytes | x509.CertificateSigningRequest | None = None,
        ttl: timedelta | None = None,
        dns_names: Sequence[str] = (),
        holder: str | None = None,
    ) -> X509Svid:
        """Mint one X509-SVID (see :meth:`mint_x509_svids`)."""
        (svid,) = await self.mint_x509_svids(
            [X509Request(spiffe_id, csr=csr, ttl=ttl, dns_names=dns_names)], holder=holder
        )
        return svid

    async def mint_jwt_svid(
        self,
        spiffe_id: SpiffeId,
        *,
        audience: Sequence[str],
        ttl: timedelta | None = None,
        holder: str | None = None,
    ) -> JwtSvid:
        """Mint a JWT-SVID for ``audience``; it never outlives its signing key."""
        check_member(spiffe_id, self.settings)
        now = self.now()
        svid = mint_jwt_svid(
            self.signer(AuthorityKind.JWT),
            spiffe_id=spiffe_id,
            audience=audience,
            ttl=ttl or self.settings.jwt_svid_ttl,
            now=now,
        )
        await self.store.record_issued(journal_entries([svid], now, holder=holder))
        return svid
