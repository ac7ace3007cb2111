"""The certificate authority as one object: the datastore, the keys, rotation and minting behind one face.

Each process keeps an in-memory snapshot of the authorities (refreshed by :meth:`refresh`, which the rotator calls
every tick), so minting costs no database read; every change is made in a locked transaction and then re-read, so
replicas agree on the active authority within one tick and never sign with a revoked one for longer.

With ``ca.key_store: database`` the authority rows are sealed under the key-encryption key (``datastore/rowseal.py``)
and a row that does not verify is invisible here: not in the bundle, not a signer, not counted by rotation.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from sigil.ca.authority import (
    Authority,
    AuthorityKind,
    AuthorityStatus,
    Signer,
    new_jwt_authority,
    new_x509_authority,
)
from sigil.ca.bundle import TrustBundle
from sigil.ca.csr import parse_csr
from sigil.ca.datastore.rowseal import AuthoritySeal
from sigil.ca.datastore.store import Datastore, JournalEntry, Transaction
from sigil.ca.errors import (
    AuthorityError,
    AuthorityRowRefusedError,
    InvalidSpiffeIdError,
    KeyStoreError,
    NoActiveAuthorityError,
)
from sigil.ca.jwtsvid import JwtSvid, mint_jwt_svid
from sigil.ca.keys import PublicKey, generate_key, public_key_der
from sigil.ca.keystore import (
    NO_SEALED_KEY,
    DiskKeyStore,
    KeyStore,
    SealedDatabaseKeyStore,
    load_key_encryption_key,
)
from sigil.ca.rotation import Activate, Prepare, plan_rotation
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.upstream import UpstreamCa, load_upstream_ca
from sigil.ca.x509svid import X509Svid, mint_x509_svid

__all__ = ["CertificateAuthority", "Clock", "X509Request", "utc_now"]

Clock = Callable[[], datetime]
_log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class X509Request:
    """One X509-SVID to mint: the caller's CSR (or public key) and the identity the CA decided on."""

    spiffe_id: SpiffeId
    csr: bytes | x509.CertificateSigningRequest | None = None
    public_key: PublicKey | None = None
    ttl: timedelta | None = None
    dns_names: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    authorities: tuple[Authority, ...] = ()
    signers: Mapping[AuthorityKind, Signer] = field(default_factory=dict)
    bundle: TrustBundle | None = None
    #: Per kind, a refused row that claims to be active while no row that verifies is: named in the error.
    refused_active: Mapping[AuthorityKind, str] = field(default_factory=dict)


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
        self._snapshot = _Snapshot()
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        self._changed = asyncio.Condition()

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
        upstream = load_upstream_ca(settings.upstream_dir) if settings.upstream_dir else None
        kek = None
        if settings.key_store == "database":
            if settings.key_encryption_key_file is None:
                raise KeyStoreError("key_store", "'database' needs key_encryption_key_file")
            kek = await asyncio.to_thread(load_key_encryption_key, settings.key_encryption_key_file)
        store = await Datastore.open(
            settings.effective_database_url,
            extra_migrations=extra_migrations,
            seal=AuthoritySeal(kek) if kek is not None else None,
        )
        keys: KeyStore = (
            SealedDatabaseKeyStore(store.engine, kek)
            if kek is not None
            else DiskKeyStore(settings.effective_key_dir)
        )
        ca = cls(settings, store, keys, clock=clock, upstream=upstream)
        try:
            await ca._seal_unsealed_rows()
            await ca.rotate()
        except BaseException:
            await store.aclose()
            raise
        return ca

    async def aclose(self) -> None:
        await self.store.aclose()

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
        signer = self._snapshot.signers.get(kind)
        if signer is None or signer.authority.not_after <= self.now():
            refused = self._snapshot.refused_active.get(kind)
            if refused is not None:
                raise AuthorityRowRefusedError(refused, kind.value)
            raise NoActiveAuthorityError(kind.value)
        return signer

    async def refresh(self) -> TrustBundle:
        """Re-read the authorities and bundle sequence from the datastore."""
        rows = await self.store.read_authorities()
        authorities = rows.trusted
        refused_active = {
            AuthorityKind(r.kind): r.authority_id
            for r in rows.refused
            if r.status == AuthorityStatus.ACTIVE.value and r.kind in set(AuthorityKind)
        }
        sequence = await self.store.bundle_sequence()
        now = self.now()
        signers: dict[AuthorityKind, Signer] = {}
        for authority in authorities:
            if authority.status is AuthorityStatus.ACTIVE:
                key = await self._keys.get(authority.kind, authority.authority_id)
                signers[authority.kind] = Signer(authority, key)
        bundle = self._bundle_of(authorities, now, sequence)
        previous = self._snapshot.bundle
        self._snapshot = _Snapshot(
            authorities,
            signers,
            bundle,
            {k: v for k, v in refused_active.items() if k not in signers},
        )
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

    def _bundle_of(
        self, authorities: Sequence[Authority], now: datetime, sequence: int
    ) -> TrustBundle:
        anchors: dict[bytes, x509.Certificate] = {}
        jwt_keys: dict[str, PublicKey] = {}
        for authority in sorted(authorities, key=lambda a: a.authority_id):
            if not authority.in_bundle(now):
                continue
            if authority.kind is AuthorityKind.X509 and authority.anchor is not None:
                anchors.setdefault(
                    authority.anchor.public_bytes(serialization.Encoding.DER), authority.anchor
                )
            elif authority.kind is AuthorityKind.JWT:
                jwt_keys[authority.authority_id] = authority.public_key
        return TrustBundle(
            self.settings.trust_domain,
            tuple(anchors.values()),
            jwt_keys,
            sequence,
            int(self.settings.refresh_hint.total_seconds()),
        )

    async def _commit_bundle(self, tx: Transaction, now: datetime) -> None:
        content = self._bundle_of(await tx.authorities(), now, 0)
        await tx.record_bundle_content(content.x509_der() + content.jwt_jwks_json())

    # ------------------------------------------------------------------ sealed rows
    async def _seal_unsealed_rows(self) -> None:
        """Seal the rows of a database from before rows were sealed, once, and only those provably the CA's own.

        This runs only while no row of the database verifies (the first start after migration 0003): once one
        does, an unsealed row can only have been written by someone without the key-encryption key. Even then a
        row is sealed only if it is revoked (never published nor used, whatever it claims) or its key is sealed
        under the key-encryption key and matches it, and its certificate is that key's, self-signed or under the
        configured upstream CA; anything else stays refused.
        """
        if not self.store.sealed:
            return
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            rows = await tx.read_authorities(report=False)
            if rows.trusted:
                return
            if any(r.sealed for r in rows.refused):
                # Sealed rows and none verifies: this is not their key. Going on would bootstrap new authorities
                # beside the real ones, so the start stops, as it does when a sealed private key does not open.
                raise KeyStoreError(
                    str(self.settings.key_encryption_key_file),
                    "the datastore's authority rows were sealed with another key: their seal does not open with "
                    "this key-encryption key",
                )
            for authority in await tx.unsealed_authorities():
                why = await self._why_not_ours(authority)
                if why is not None:
                    _log.error(
                        "authority.unsealed_row_refused",
                        authority_id=authority.authority_id,
                        kind=authority.kind.value,
                        claimed_status=authority.status.value,
                        reason=why,
                    )
                    continue
                await tx.put_authority(authority)
                _log.warning(
                    "authority.unsealed_row_sealed",
                    authority_id=authority.authority_id,
                    kind=authority.kind.value,
                    status=authority.status.value,
                )

    async def _why_not_ours(self, authority: Authority) -> str | None:
        """None when ``authority`` is provably the CA's own; else why not."""
        if authority.status is AuthorityStatus.REVOKED:
            return None
        try:
            key = await self._keys.get(authority.kind, authority.authority_id)
        except KeyStoreError as err:
            if err.reason != NO_SEALED_KEY:
                raise  # a sealed key that does not open: the wrong key-encryption key, which must stop the start
            return "no private key sealed under the key-encryption key belongs to it"
        if public_key_der(key.public_key()) != public_key_der(authority.public_key):
            return "its public key is not the one of its sealed private key"
        if authority.kind is AuthorityKind.JWT:
            return None
        certificate = authority.certificate
        if certificate is None or public_key_der(certificate.public_key()) != public_key_der(  # type: ignore[arg-type]
            authority.public_key
        ):
            return "its certificate does not certify its key"
        if authority.upstream_root is None:
            issuer, chain_ok = certificate, not authority.upstream_chain
        else:
            upstream = self._upstream
            chain_ok = (
                upstream is not None
                and authority.upstream_root == upstream.root
                and authority.upstream_chain == upstream.chain_below_root
            )
            issuer = (
                authority.upstream_chain[0] if authority.upstream_chain else authority.upstream_root
            )
        if not chain_ok:
            return "its certificate chain is not self-signed nor the configured upstream CA's"
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return "its certificate is not signed by the issuer its chain names"
        return None

    # ------------------------------------------------------------------ rotation
    async def rotate(self) -> list[str]:
        """Take the scheduled rotation steps (under the datastore's lock); returns what was done."""
        done: list[str] = []
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            for kind in AuthorityKind:
                steps = plan_rotation(kind, await tx.authorities(kind), now)
                prepared_id = ""
                for step in steps:
                    if isinstance(step, Prepare):
                        prepared_id = (await self._prepare(tx, kind, now)).authority_id
                        done.append(f"prepared {kind} authority {prepared_id}")
                    elif isinstance(step, Activate):
                        target = step.authority_id or prepared_id
                        await self._activate(tx, kind, target, now)
                        done.append(f"activated {kind} authority {target}")
            await self._commit_bundle(tx, now)
        await self.refresh()
        return done

    async def _prepare(self, tx: Transaction, kind: AuthorityKind, now: datetime) -> Authority:
        # A prepared authority that was never activated is replaced rather than kept beside the new one.
        for old in await tx.authorities(kind):
            if old.status is AuthorityStatus.PREPARED:
                await tx.put_authority(old.with_status(AuthorityStatus.REVOKED))
                await self._keys.delete(kind, old.authority_id, tx=tx)
        if kind is AuthorityKind.X509:
            key = await asyncio.to_thread(generate_key, self.settings.key_type)
            authority = new_x509_authority(
                self.settings.trust_domain,
                key,
                now=now,
                ttl=self.settings.ca_ttl,
                organization=self.settings.organization,
                upstream=self._upstream,
            )
        else:
            key = await asyncio.to_thread(generate_key, self.settings.jwt_key_type)
            authority = new_jwt_authority(key, now=now, ttl=self.settings.ca_ttl)
        # The key reaches disk before the row that points at it is committed.
        await self._keys.put(kind, authority.authority_id, key, tx=tx)
        await tx.put_authority(authority)
        return authority

    async def _activate(
        self, tx: Transaction, kind: AuthorityKind, authority_id: str, now: datetime
    ) -> None:
        authorities = {a.authority_id: a for a in await tx.authorities(kind)}
        target = authorities.get(authority_id)
        if target is None:
            raise AuthorityError(authority_id, f"no such {kind} authority")
        if target.status is not AuthorityStatus.PREPARED:
            raise AuthorityError(
                authority_id, f"is {target.status}, only a prepared authority can be activated"
            )
        if target.not_after <= now:
            raise AuthorityError(authority_id, "has expired")
        for authority in authorities.values():
            if authority.status is AuthorityStatus.ACTIVE:
                await tx.put_authority(authority.with_status(AuthorityStatus.OLD))
        await tx.put_authority(target.with_status(AuthorityStatus.ACTIVE))

    # ------------------------------------------------------------------ manual verbs
    async def prepare(self, kind: AuthorityKind) -> Authority:
        """Prepare a new authority now (it joins the bundle; it signs once activated)."""
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            authority = await self._prepare(tx, kind, now)
            await self._commit_bundle(tx, now)
        await self.refresh()
        return authority

    async def activate(self, kind: AuthorityKind, authority_id: str) -> Authority:
        """Make the prepared authority the one that signs; the current one becomes old."""
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            await self._activate(tx, kind, authority_id, now)
            await self._commit_bundle(tx, now)
        await self.refresh()
        return self._find(authority_id)

    async def taint(self, kind: AuthorityKind, authority_id: str) -> int:
        """Mark an old authority as tainted; what it signed is due for re-issue. Returns how many SVIDs."""
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            authority = await self._existing(tx, kind, authority_id)
            if authority.status is not AuthorityStatus.OLD:
                raise AuthorityError(
                    authority_id,
                    f"is {authority.status}; only an old authority can be tainted (activate its successor first)",
                )
            if authority.tainted:
                raise AuthorityError(authority_id, "is already tainted")
            await tx.put_authority(authority.with_status(authority.status, tainted=True))
            count = await tx.mark_reissue_due(authority_id)
        await self.refresh()
        return count

    async def revoke(self, kind: AuthorityKind, authority_id: str) -> Authority:
        """Remove a tainted authority from the bundle for good, and destroy its key."""
        now = self.now()
        async with self.store.transaction(now=now, holder=self._holder) as tx:
            authority = await self._existing(tx, kind, authority_id)
            if not authority.tainted or authority.status is not AuthorityStatus.OLD:
                raise AuthorityError(
                    authority_id, "only a tainted old authority can be revoked (taint it first)"
                )
            await tx.put_authority(authority.with_status(AuthorityStatus.REVOKED))
            await self._commit_bundle(tx, now)
        await self._keys.delete(kind, authority_id)
        await self.refresh()
        return self._find(authority_id)

    async def _existing(self, tx: Transaction, kind: AuthorityKind, authority_id: str) -> Authority:
        for authority in await tx.authorities(kind):
            if authority.authority_id == authority_id:
                return authority
        raise AuthorityError(authority_id, f"no such {kind} authority")

    def _find(self, authority_id: str) -> Authority:
        for authority in self._snapshot.authorities:
            if authority.authority_id == authority_id:
                return authority
        raise AuthorityError(authority_id, "no such authority")

    # ------------------------------------------------------------------ minting
    def _check_member(self, spiffe_id: SpiffeId) -> None:
        if not spiffe_id.is_member_of(self.settings.trust_domain):
            raise InvalidSpiffeIdError(
                str(spiffe_id), f"not in this CA's trust domain {self.settings.trust_domain}"
            )

    def _mint_batch(self, requests: Sequence[X509Request], now: datetime) -> list[X509Svid]:
        signer = self.signer(AuthorityKind.X509)
        for request in requests:
            self._check_member(request.spiffe_id)
        minted = []
        for request in requests:
            private_key = None
            if request.csr is not None:
                _, public_key = parse_csr(request.csr)
            elif request.public_key is not None:
                public_key = request.public_key
            else:
                private_key = generate_key(self.settings.key_type)
                public_key = private_key.public_key()
            minted.append(
                mint_x509_svid(
                    signer,
                    spiffe_id=request.spiffe_id,
                    public_key=public_key,
                    ttl=request.ttl or self.settings.x509_svid_ttl,
                    now=now,
                    dns_names=request.dns_names,
                    private_key=private_key,
                )
            )
        return minted

    async def mint_x509_svids(self, requests: Sequence[X509Request]) -> list[X509Svid]:
        """Mint a batch: the signatures in a worker thread, the journal in one transaction.

        A request without a CSR or public key gets a key generated by the CA (``x509 mint``); otherwise the SVID
        certifies the caller's key and the CA never sees a private key.
        """
        now = self.now()
        minted = await asyncio.to_thread(self._mint_batch, requests, now)
        await self.store.record_issued(
            [
                JournalEntry(
                    serial=svid.serial_hex,
                    kind="x509",
                    spiffe_id=str(svid.spiffe_id),
                    authority_id=svid.authority_id,
                    issued_at=now,
                    not_after=svid.not_after,
                )
                for svid in minted
            ]
        )
        return minted

    async def mint_x509_svid(
        self,
        spiffe_id: SpiffeId,
        *,
        csr: bytes | x509.CertificateSigningRequest | None = None,
        ttl: timedelta | None = None,
        dns_names: Sequence[str] = (),
    ) -> X509Svid:
        """Mint one X509-SVID (see :meth:`mint_x509_svids`)."""
        (svid,) = await self.mint_x509_svids(
            [X509Request(spiffe_id, csr=csr, ttl=ttl, dns_names=dns_names)]
        )
        return svid

    async def mint_jwt_svid(
        self, spiffe_id: SpiffeId, *, audience: Sequence[str], ttl: timedelta | None = None
    ) -> JwtSvid:
        """Mint a JWT-SVID for ``audience``; it never outlives its signing key."""
        self._check_member(spiffe_id)
        now = self.now()
        svid = mint_jwt_svid(
            self.signer(AuthorityKind.JWT),
            spiffe_id=spiffe_id,
            audience=audience,
            ttl=ttl or self.settings.jwt_svid_ttl,
            now=now,
        )
        await self.store.record_issued(
            [
                JournalEntry(
                    serial=svid.token_id,
                    kind="jwt",
                    spiffe_id=str(spiffe_id),
                    authority_id=svid.key_id,
                    issued_at=now,
                    not_after=svid.expiry,
                )
            ]
        )
        return svid
