"""A rotation step's transaction over the CA's tables, and the rows it reads and writes as values.

Everything that must agree across replicas is read and written in one :class:`Transaction` that holds the rotation
lock (taken by :meth:`~sigil.ca.datastore.store.Datastore.transaction`): which authority is active, the bundle
sequence, which SVIDs are due for reissue.

With a seal (``ca.key_store: database``), every authority row written carries a tag under the key-encryption key
and every row read is checked (``rowseal.py``): one that does not verify is reported once per process as
``authority.row_refused`` and left out of what the CA sees, so it never reaches the bundle and never signs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import case, func, select, update
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import (
    AsyncSession,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Executable

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus
from sigil.ca.bundle import load_der_certificates
from sigil.ca.datastore.models import AuthorityRow, BundleStateRow, JournalRow
from sigil.ca.datastore.rowseal import SEALED_FIELDS, AuthoritySeal
from sigil.ca.errors import DatastoreError
from sigil.ca.keys import PublicKey, public_key_der

__all__ = ["AuthorityRows", "JournalEntry", "RefusedAuthority", "Transaction", "utc"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One issued SVID as the journal records it."""

    serial: str
    kind: str
    spiffe_id: str
    authority_id: str
    issued_at: datetime
    not_after: datetime
    reissue_due: bool = False
    #: The agent that asked for it (or the server, for its own SVID); None when minted by hand or agentless.
    holder: str | None = None
    replaced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefusedAuthority:
    """An authority row that does not verify under the key-encryption key, and what it claims to be."""

    authority_id: str
    kind: str
    status: str
    reason: str
    #: True when the row carries a seal that is wrong, False when it carries none.
    sealed: bool


@dataclass(frozen=True, slots=True)
class AuthorityRows:
    """The authorities read from the datastore: those the CA may use, and those it refused."""

    trusted: tuple[Authority, ...]
    refused: tuple[RefusedAuthority, ...] = ()


def utc(value: datetime) -> datetime:
    # SQLite hands datetimes back naive; everything Sigil stores is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _to_row(authority: Authority, now: datetime) -> dict[str, Any]:
    chain = b""
    if authority.certificate is not None:
        chain = b"".join(_der(c) for c in (authority.certificate, *authority.upstream_chain))
    return {
        "authority_id": authority.authority_id,
        "kind": authority.kind.value,
        "status": authority.status.value,
        "tainted": authority.tainted,
        "not_before": authority.not_before,
        "not_after": authority.not_after,
        "public_key_der": public_key_der(authority.public_key),
        "certificate_chain_der": chain or None,
        "upstream_root_der": _der(authority.upstream_root) if authority.upstream_root else None,
        "updated_at": now,
    }


def _from_row(row: AuthorityRow) -> Authority:
    chain = load_der_certificates(row.certificate_chain_der) if row.certificate_chain_der else ()
    public_key: PublicKey = serialization.load_der_public_key(row.public_key_der)  # type: ignore[assignment]
    return Authority(
        authority_id=row.authority_id,
        kind=AuthorityKind(row.kind),
        status=AuthorityStatus(row.status),
        tainted=row.tainted,
        not_before=utc(row.not_before),
        not_after=utc(row.not_after),
        public_key=public_key,
        certificate=chain[0] if chain else None,
        upstream_chain=tuple(chain[1:]),
        upstream_root=x509.load_der_x509_certificate(row.upstream_root_der)
        if row.upstream_root_der
        else None,
    )


class Transaction:
    """What a locked rotation step may read and write, all in one database transaction."""

    def __init__(
        self,
        session: AsyncSession,
        now: datetime,
        *,
        seal: AuthoritySeal | None = None,
        reported: set[tuple[str, str, str]] | None = None,
    ) -> None:
        self._session = session
        self._now = now
        self._seal = seal
        self._reported = reported if reported is not None else set()

    async def execute(self, statement: Executable) -> Result[Any]:
        """Run a statement of another table (the sealed key store's) inside this transaction."""
        return await self._session.execute(statement)

    async def _rows(self, kind: AuthorityKind | None) -> Sequence[AuthorityRow]:
        query = select(AuthorityRow).order_by(AuthorityRow.created_at, AuthorityRow.authority_id)
        if kind is not None:
            query = query.where(AuthorityRow.kind == kind.value)
        return (await self._session.scalars(query)).all()

    async def read_authorities(
        self, kind: AuthorityKind | None = None, *, report: bool = True
    ) -> AuthorityRows:
        """Every authority row of ``kind``, checked against the seal when there is one (refusals logged once)."""
        rows = await self._rows(kind)
        if self._seal is None:
            return AuthorityRows(tuple(_from_row(row) for row in rows))
        trusted: list[Authority] = []
        refused: list[RefusedAuthority] = []
        for row in rows:
            values = {name: getattr(row, name) for name in SEALED_FIELDS}
            if self._seal.verifies(values, row.seal):
                trusted.append(_from_row(row))
                continue
            reason = "the row carries no seal" if row.seal is None else "the row's seal is wrong"
            refused.append(
                RefusedAuthority(
                    row.authority_id, row.kind, row.status, reason, row.seal is not None
                )
            )
            key = (row.authority_id, row.status, reason)
            if report and key not in self._reported:
                self._reported.add(key)
                _log.error(
                    "authority.row_refused",
                    authority_id=row.authority_id,
                    kind=row.kind,
                    claimed_status=row.status,
                    reason=f"{reason} (written without the key-encryption key): kept out of the bundle, never used",
                )
        return AuthorityRows(tuple(trusted), tuple(refused))

    async def authorities(self, kind: AuthorityKind | None = None) -> list[Authority]:
        """The authorities of ``kind`` the CA may use (with a seal: only rows that verify)."""
        return list((await self.read_authorities(kind)).trusted)

    async def unsealed_authorities(self) -> list[Authority]:
        """Rows written before rows were sealed (no tag at all), parsed; for the one-time adoption at start."""
        found = []
        for row in await self._rows(None):
            if row.seal is not None:
                continue
            try:
                found.append(_from_row(row))
            except ValueError:
                continue  # not even an authority; it stays refused
        return found

    async def put_authority(self, authority: Authority) -> None:
        """Insert or update ``authority`` (sealed, when there is a seal)."""
        values = _to_row(authority, self._now)
        values["seal"] = self._seal.tag(values) if self._seal is not None else None
        existing = await self._session.get(AuthorityRow, authority.authority_id)
        if existing is None:
            self._session.add(AuthorityRow(created_at=self._now, **values))
        else:
            for name, value in values.items():
                setattr(existing, name, value)
        await self._session.flush()

    async def delete_authority(self, authority_id: str) -> None:
        row = await self._session.get(AuthorityRow, authority_id)
        if row is not None:
            await self._session.delete(row)
            await self._session.flush()

    async def record_bundle_content(self, content: bytes) -> int:
        """Advance the bundle sequence if ``content`` differs from what the current number was given to."""
        digest = hashlib.sha256(content).hexdigest()
        state = await self._session.get(BundleStateRow, 1)
        if state is None:
            raise DatastoreError("bundle_state row is missing; the schema was not migrated")
        if state.digest != digest:
            state.sequence += 1
            state.digest = digest
            state.updated_at = self._now
            await self._session.flush()
        return state.sequence

    async def mark_reissue_due(self, authority_id: str) -> int:
        """Mark the unexpired SVIDs of ``authority_id`` for re-issue; returns how many.

        One already superseded by a later SVID of another authority (same kind, ID and holder, typically renewed
        after the activation and before the taint) is recorded as replaced at once: nobody holds it any more.
        """
        later = aliased(JournalRow)
        superseded = (
            select(later.serial)
            .where(
                later.kind == JournalRow.kind,
                later.spiffe_id == JournalRow.spiffe_id,
                func.coalesce(later.holder, "") == func.coalesce(JournalRow.holder, ""),
                later.authority_id != authority_id,
                later.issued_at >= JournalRow.issued_at,
            )
            .exists()
        )
        result = await self._session.execute(
            update(JournalRow)
            .where(JournalRow.authority_id == authority_id, JournalRow.not_after > self._now)
            .values(
                reissue_due=True,
                replaced_at=case((superseded, self._now), else_=JournalRow.replaced_at),
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
