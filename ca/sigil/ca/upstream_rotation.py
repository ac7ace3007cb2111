"""Moving Sigil from one upstream CA to another without a dropped connection: prepare, activate, retire.

The shape follows SPIRE's ``upstreamauthority taint|revoke`` (cmd/spire-server/cli/upstreamauthority) on top of
Sigil's own authority steps. Each X.509 authority records the upstream root that anchors it, and the bundle carries
the anchor of every authority still in it (:func:`~sigil.ca.authority_steps.bundle_of`), so:

- ``prepare`` loads and cross-checks the new files and prepares an X.509 authority signed under them: the new root
  joins the bundle, nothing signs under it yet;
- ``activate`` makes that authority the signer and taints every old authority under another root, so agents
  re-issue at once (the journal marks what they signed);
- ``retire`` revokes the authorities under the old root, which drops that root from the bundle, and refuses while
  SVIDs chained to it are unexpired and not yet replaced, as ``authority revoke`` does (``force`` overrides).

Which upstream signs new authorities is recorded in the datastore (:mod:`sigil.ca.datastore.upstreams`), so every
replica's scheduled rotation prepares under the same one; a replica loads that upstream's files from the recorded
directory the first time it needs them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus
from sigil.ca.authority_steps import (
    activate_authority,
    prepare_authority,
    revoke_authority,
    taint_authority,
)
from sigil.ca.datastore.journal import Outstanding, outstanding_of
from sigil.ca.datastore.transaction import Transaction
from sigil.ca.datastore.upstreams import (
    UpstreamRecord,
    UpstreamStatus,
    delete_upstream_record,
    put_upstream_record,
    read_upstream_records,
    root_fingerprint,
)
from sigil.ca.errors import AuthorityError, UpstreamAuthorityError, UpstreamInUseError
from sigil.ca.keystore import KeyStore
from sigil.ca.settings import CaSettings
from sigil.ca.upstream import UpstreamCa, load_upstream_ca

__all__ = [
    "Retirement",
    "UpstreamView",
    "activate_upstream",
    "prepare_upstream",
    "resolve_upstream",
    "retire_upstream",
    "upstream_views",
]

_UPSTREAM = "upstream"


@dataclass(frozen=True, slots=True)
class UpstreamView:
    """One upstream as ``upstream show`` reports it: the record, the authorities under it, what is still out."""

    record: UpstreamRecord
    authorities: tuple[Authority, ...]
    outstanding: Outstanding


@dataclass(frozen=True, slots=True)
class Retirement:
    """What ``retire`` did: the roots that left the bundle, the authorities revoked, what a force cut."""

    roots: tuple[str, ...]
    revoked: tuple[str, ...]
    cut: Outstanding = field(default_factory=lambda: Outstanding(_UPSTREAM))


def _root_of(authority: Authority) -> str | None:
    return root_fingerprint(authority.upstream_root) if authority.upstream_root else None


def _current(records: list[UpstreamRecord]) -> UpstreamRecord | None:
    """The upstream new authorities are signed under: a prepared one, else the active one."""
    for status in (UpstreamStatus.PREPARED, UpstreamStatus.ACTIVE):
        found = [r for r in records if r.status is status]
        if found:
            return found[-1]
    return None


async def resolve_upstream(tx: Transaction, loaded: UpstreamCa | None) -> UpstreamCa | None:
    """The upstream to sign a new X.509 authority under: the datastore's choice, ``loaded`` when that is it."""
    current = _current(await read_upstream_records(tx.execute))
    if current is None or (
        loaded is not None and root_fingerprint(loaded.root) == current.fingerprint
    ):
        return loaded
    upstream = await asyncio.to_thread(load_upstream_ca, current.directory)
    if root_fingerprint(upstream.root) != current.fingerprint:
        # Files replaced under a recorded directory: signing under them would put an unannounced root in SVIDs.
        raise UpstreamAuthorityError(
            str(current.directory),
            f"now holds root {root_fingerprint(upstream.root)[:16]}, but the datastore records "
            f"{current.fingerprint[:16]} for it; run `upstream prepare --dir` for a new root",
        )
    return upstream


async def prepare_upstream(
    tx: Transaction,
    now: datetime,
    new: UpstreamCa,
    directory: Path,
    *,
    current: UpstreamCa | None,
    settings: CaSettings,
    keys: KeyStore,
) -> Authority:
    """Record ``new`` as the prepared upstream and prepare an X.509 authority under it (its root joins the bundle)."""
    if current is None or settings.upstream_dir is None:
        raise UpstreamAuthorityError(
            "ca.upstream_dir",
            "is not set: Sigil's authority is self-signed, so there is no upstream root to rotate",
        )
    fingerprint = root_fingerprint(new.root)
    records = await read_upstream_records(tx.execute)
    current_fp = root_fingerprint(current.root)
    if fingerprint == current_fp:
        raise UpstreamAuthorityError(
            str(directory), "has the root of the upstream in use; a rotation needs a new root"
        )
    for record in records:
        if record.fingerprint == fingerprint and record.status is not UpstreamStatus.PREPARED:
            raise UpstreamAuthorityError(
                str(directory), f"holds a root that was {record.status} before; it cannot come back"
            )
    if not any(r.fingerprint == current_fp for r in records):
        # The upstream from ca.upstream_dir is recorded the first time it is rotated away from.
        await put_upstream_record(
            tx.execute,
            UpstreamRecord(current.root, settings.upstream_dir, UpstreamStatus.ACTIVE),
            now,
        )
    for record in records:
        if record.status is UpstreamStatus.PREPARED and record.fingerprint != fingerprint:
            await delete_upstream_record(tx.execute, record.fingerprint)
    await put_upstream_record(
        tx.execute, UpstreamRecord(new.root, directory, UpstreamStatus.PREPARED), now
    )
    # An earlier prepared X.509 authority (scheduled, or under a replaced upstream) is revoked by this.
    return await prepare_authority(
        tx, AuthorityKind.X509, now, settings=settings, keys=keys, upstream=new
    )


async def activate_upstream(
    tx: Transaction, now: datetime, *, upstream: UpstreamCa, settings: CaSettings, keys: KeyStore
) -> tuple[Authority, dict[str, int]]:
    """Make the authority under the prepared ``upstream`` sign and taint every old one under another root.

    Returns the active authority and, per tainted authority, how many SVIDs it signed are now due for re-issue.
    """
    records = await read_upstream_records(tx.execute)
    fingerprint = root_fingerprint(upstream.root)
    prepared = [r for r in records if r.status is UpstreamStatus.PREPARED]
    if not prepared or prepared[-1].fingerprint != fingerprint:
        raise AuthorityError(_UPSTREAM, "no prepared upstream (run `upstream prepare --dir DIR`)")
    under_new = [a for a in await tx.authorities(AuthorityKind.X509) if _root_of(a) == fingerprint]
    if not any(a.status is AuthorityStatus.ACTIVE for a in under_new):
        # The scheduled rotation may have activated it already; else the prepared one, or a fresh one.
        ready = [a for a in under_new if a.status is AuthorityStatus.PREPARED and a.not_after > now]
        target = ready[-1] if ready else None
        if target is None:
            target = await prepare_authority(
                tx, AuthorityKind.X509, now, settings=settings, keys=keys, upstream=upstream
            )
        await activate_authority(tx, AuthorityKind.X509, target.authority_id, now)
    tainted: dict[str, int] = {}
    for authority in await tx.authorities(AuthorityKind.X509):
        if (
            authority.status is AuthorityStatus.OLD
            and not authority.tainted
            and _root_of(authority) != fingerprint
        ):
            tainted[authority.authority_id] = await taint_authority(
                tx, AuthorityKind.X509, authority.authority_id
            )
    for record in records:
        if record.status is UpstreamStatus.ACTIVE:
            await put_upstream_record(tx.execute, record.with_status(UpstreamStatus.OLD), now)
    await put_upstream_record(tx.execute, prepared[-1].with_status(UpstreamStatus.ACTIVE), now)
    active = next(
        a for a in await tx.authorities(AuthorityKind.X509) if a.status is AuthorityStatus.ACTIVE
    )
    return active, tainted


def _merge(name: str, parts: list[Outstanding]) -> Outstanding:
    holders: dict[str, int] = {}
    for part in parts:
        for holder, count in part.holders.items():
            holders[holder] = holders.get(holder, 0) + count
    expiries = [p.last_expiry for p in parts if p.last_expiry is not None]
    return Outstanding(name, sum(p.count for p in parts), holders, max(expiries, default=None))


async def retire_upstream(tx: Transaction, now: datetime, *, force: bool = False) -> Retirement:
    """Revoke every authority under an old upstream root, so the root leaves the bundle.

    Refused with :class:`UpstreamInUseError` while SVIDs chained to it are unexpired and not yet replaced since the
    taint, unless ``force``. The caller destroys the revoked authorities' keys once this commits.
    """
    records = [r for r in await read_upstream_records(tx.execute) if r.status is UpstreamStatus.OLD]
    if not records:
        raise AuthorityError(_UPSTREAM, "no old upstream to retire (run `upstream activate` first)")
    old = {r.fingerprint for r in records}
    doomed = [
        a
        for a in await tx.authorities(AuthorityKind.X509)
        if _root_of(a) in old and a.status is not AuthorityStatus.REVOKED
    ]
    for authority in doomed:
        if authority.status is not AuthorityStatus.OLD:
            raise AuthorityError(
                authority.authority_id, f"is {authority.status} under an old upstream root"
            )
        if not authority.tainted:
            await taint_authority(tx, AuthorityKind.X509, authority.authority_id)
    name = ", ".join(sorted(f[:16] for f in old))
    # Counted under the rotation lock, as `authority revoke` counts.
    left = _merge(name, [await outstanding_of(tx.execute, a.authority_id, now) for a in doomed])
    if left.count and not force:
        raise UpstreamInUseError(
            name,
            left.describe(),
            remaining=left.count,
            holders=left.holders,
            last_expiry=left.last_expiry,
        )
    for authority in doomed:
        await revoke_authority(tx, AuthorityKind.X509, authority.authority_id, now, force=True)
    for record in records:
        await put_upstream_record(tx.execute, record.with_status(UpstreamStatus.RETIRED), now)
    return Retirement(
        tuple(sorted(old)),
        tuple(a.authority_id for a in doomed),
        left if left.count else Outstanding(name),
    )


async def upstream_views(tx: Transaction, now: datetime) -> list[UpstreamView]:
    """Every recorded upstream with the X.509 authorities under it and what revoking them would cut now."""
    authorities = await tx.authorities(AuthorityKind.X509)
    views = []
    for record in await read_upstream_records(tx.execute):
        under = tuple(a for a in authorities if _root_of(a) == record.fingerprint)
        parts = [
            await outstanding_of(tx.execute, a.authority_id, now)
            for a in under
            if a.status is not AuthorityStatus.REVOKED
        ]
        views.append(UpstreamView(record, under, _merge(record.fingerprint[:16], parts)))
    return views
