"""The authority steps a locked transaction takes: prepare, activate, taint, revoke, and the bundle they leave.

Rotation (:mod:`sigil.ca.rotation` decides when) and the operator's verbs both go through these, inside one
:meth:`~sigil.ca.datastore.store.Datastore.transaction`, so a step and the bundle sequence it bumps commit together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil.ca.authority import (
    Authority,
    AuthorityKind,
    AuthorityStatus,
    new_jwt_authority,
    new_x509_authority,
)
from sigil.ca.bundle import TrustBundle
from sigil.ca.datastore.journal import Outstanding, outstanding_of
from sigil.ca.datastore.transaction import Transaction
from sigil.ca.errors import AuthorityError, AuthorityInUseError
from sigil.ca.keys import PublicKey, generate_key
from sigil.ca.keystore import KeyStore
from sigil.ca.rotation import Activate, Prepare, plan_rotation
from sigil.ca.settings import CaSettings
from sigil.ca.upstream import UpstreamCa

__all__ = [
    "activate_authority",
    "bundle_of",
    "commit_bundle",
    "prepare_authority",
    "revoke_authority",
    "scheduled_rotation",
    "taint_authority",
]


def bundle_of(
    authorities: Sequence[Authority], now: datetime, sequence: int, *, settings: CaSettings
) -> TrustBundle:
    """The trust bundle ``authorities`` make at ``now``: every X.509 anchor and JWT key still in the bundle."""
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
        settings.trust_domain,
        tuple(anchors.values()),
        jwt_keys,
        sequence,
        int(settings.refresh_hint.total_seconds()),
    )


async def commit_bundle(tx: Transaction, now: datetime, *, settings: CaSettings) -> None:
    """Record the bundle content of the transaction's authorities (the sequence moves only when it changed)."""
    content = bundle_of(await tx.authorities(), now, 0, settings=settings)
    await tx.record_bundle_content(content.x509_der() + content.jwt_jwks_json())


async def prepare_authority(
    tx: Transaction,
    kind: AuthorityKind,
    now: datetime,
    *,
    settings: CaSettings,
    keys: KeyStore,
    upstream: UpstreamCa | None,
) -> Authority:
    """A new prepared authority of ``kind`` with its key stored; an earlier prepared one is revoked."""
    # A prepared authority that was never activated is replaced rather than kept beside the new one. Its key is
    # destroyed once this commits (CertificateAuthority.run_step): destroyed here, a failure below (the new key
    # cannot be written) would roll the revocation back and leave the prepared authority without its key.
    for old in await tx.authorities(kind):
        if old.status is AuthorityStatus.PREPARED:
            await tx.put_authority(old.with_status(AuthorityStatus.REVOKED))
    if kind is AuthorityKind.X509:
        key = await asyncio.to_thread(generate_key, settings.key_type)
        authority = new_x509_authority(
            settings.trust_domain,
            key,
            now=now,
            ttl=settings.ca_ttl,
            organization=settings.organization,
            upstream=upstream,
        )
    else:
        key = await asyncio.to_thread(generate_key, settings.jwt_key_type)
        authority = new_jwt_authority(key, now=now, ttl=settings.ca_ttl)
    # The key reaches disk before the row that points at it is committed.
    await keys.put(kind, authority.authority_id, key, tx=tx)
    await tx.put_authority(authority)
    return authority


async def activate_authority(
    tx: Transaction, kind: AuthorityKind, authority_id: str, now: datetime
) -> None:
    """Make the prepared ``authority_id`` active; the active one becomes old."""
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


async def _existing(tx: Transaction, kind: AuthorityKind, authority_id: str) -> Authority:
    for authority in await tx.authorities(kind):
        if authority.authority_id == authority_id:
            return authority
    raise AuthorityError(authority_id, f"no such {kind} authority")


async def taint_authority(tx: Transaction, kind: AuthorityKind, authority_id: str) -> int:
    """Mark an old authority tainted and what it signed due for re-issue; returns how many SVIDs are due."""
    authority = await _existing(tx, kind, authority_id)
    if authority.status is not AuthorityStatus.OLD:
        raise AuthorityError(
            authority_id,
            f"is {authority.status}; only an old authority can be tainted (activate its successor first)",
        )
    if authority.tainted:
        raise AuthorityError(authority_id, "is already tainted")
    await tx.put_authority(authority.with_status(authority.status, tainted=True))
    return await tx.mark_reissue_due(authority_id)


async def revoke_authority(
    tx: Transaction, kind: AuthorityKind, authority_id: str, now: datetime, *, force: bool = False
) -> Outstanding:
    """Revoke a tainted old authority (its key is destroyed by the caller once this commits).

    Refused with :class:`AuthorityInUseError` while SVIDs it signed are unexpired and not yet replaced, unless
    ``force``: those would stop verifying the moment the bundle drops it. Returns what was cut (nothing unless
    forced).
    """
    authority = await _existing(tx, kind, authority_id)
    if not authority.tainted or authority.status is not AuthorityStatus.OLD:
        raise AuthorityError(
            authority_id, "only a tainted old authority can be revoked (taint it first)"
        )
    # Counted under the rotation lock, in the revoking transaction: nothing is journaled as replaced in between.
    left = await outstanding_of(tx.execute, authority_id, now)
    if left.count and not force:
        raise AuthorityInUseError(
            authority_id,
            left.describe(),
            remaining=left.count,
            holders=left.holders,
            last_expiry=left.last_expiry,
        )
    await tx.put_authority(authority.with_status(AuthorityStatus.REVOKED))
    return left


async def scheduled_rotation(
    tx: Transaction,
    now: datetime,
    *,
    prepare: Callable[[Transaction, AuthorityKind, datetime], Awaitable[Authority]],
) -> list[str]:
    """Take the steps SPIRE's schedule asks for now (:func:`~sigil.ca.rotation.plan_rotation`), each kind in
    turn, preparing with ``prepare``; returns what was done, for the log."""
    done: list[str] = []
    for kind in AuthorityKind:
        prepared_id = ""
        for step in plan_rotation(kind, await tx.authorities(kind), now):
            if isinstance(step, Prepare):
                prepared_id = (await prepare(tx, kind, now)).authority_id
                done.append(f"prepared {kind} authority {prepared_id}")
            elif isinstance(step, Activate):
                target = step.authority_id or prepared_id
                await activate_authority(tx, kind, target, now)
                done.append(f"activated {kind} authority {target}")
    return done
