"""The datastore's one entry point, over SQLAlchemy 2 (async).

Everything that must agree across replicas goes through here: which authority is active, the bundle sequence, the
journal of issued SVIDs. Rotation takes a lock that both databases honour (a row lock on PostgreSQL, the write lock
on SQLite), so two servers on one PostgreSQL never rotate at the same time.

With a seal (``ca.key_store: database``), every authority row written carries a tag under the key-encryption key
and every row read is checked (``rowseal.py``): one that does not verify is reported once per process as
``authority.row_refused`` and left out of what the CA sees, so it never reaches the bundle and never signs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.engine import Connection, Result
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import Executable

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus
from sigil.ca.bundle import load_der_certificates
from sigil.ca.datastore.models import AuthorityRow, BundleStateRow, JournalRow, RotationLockRow
from sigil.ca.datastore.rowseal import SEALED_FIELDS, AuthoritySeal
from sigil.ca.errors import DatastoreError
from sigil.ca.keys import PublicKey, public_key_der

__all__ = [
    "AuthorityRows",
    "Datastore",
    "JournalEntry",
    "RefusedAuthority",
    "Transaction",
    "default_sqlite_url",
]

_log = structlog.get_logger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
#: An arbitrary constant naming Sigil's migration lock among PostgreSQL advisory locks.
_MIGRATION_LOCK_KEY = 0x51613100


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


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'datastore.sqlite3'}"


def _utc(value: datetime) -> datetime:
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
        not_before=_utc(row.not_before),
        not_after=_utc(row.not_after),
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
        result = await self._session.execute(
            update(JournalRow)
            .where(JournalRow.authority_id == authority_id, JournalRow.not_after > self._now)
            .values(reissue_due=True)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class Datastore:
    """The CA's datastore on one database URL. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, *, seal: AuthoritySeal | None = None) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._seal = seal
        #: Refused rows already logged, so that a refresh every second does not repeat the same error.
        self._reported: set[tuple[str, str, str]] = set()

    @property
    def sealed(self) -> bool:
        """True when authority rows are authenticated under the key-encryption key."""
        return self._seal is not None

    def _transaction(self, session: AsyncSession, now: datetime) -> Transaction:
        return Transaction(session, now, seal=self._seal, reported=self._reported)

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        extra_migrations: Sequence[Path] = (),
        seal: AuthoritySeal | None = None,
    ) -> Datastore:
        """Connect to ``url`` and bring its schema to the newest revision; ``seal`` authenticates authority rows."""
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            kwargs["connect_args"] = {"timeout": 30}
        try:
            engine = create_async_engine(url, **kwargs)
        except (SQLAlchemyError, ValueError) as err:
            raise DatastoreError(f"cannot use database URL {url.split('@')[-1]!r}: {err}") from err
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine, seal=seal)
        try:
            await store._migrate(extra_migrations)
        except (SQLAlchemyError, OSError) as err:
            await engine.dispose()
            raise DatastoreError(f"cannot open {store.url}: {err}") from err
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def _migrate(self, extra_migrations: Sequence[Path]) -> None:
        def upgrade(connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Two replicas starting together must not both create the schema.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                )
            config = Config()
            config.set_main_option("script_location", str(_MIGRATIONS))
            locations = [str(_MIGRATIONS / "versions"), *(str(p) for p in extra_migrations)]
            config.set_main_option("path_separator", "os")
            config.set_main_option("version_locations", os.pathsep.join(locations))
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")

        async with self._engine.begin() as connection:
            await connection.run_sync(upgrade)

    async def aclose(self) -> None:
        await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """For components that keep their own tables in this database (the issuer's entries, tokens)."""
        return self._engine

    @asynccontextmanager
    async def transaction(self, *, now: datetime, holder: str) -> AsyncIterator[Transaction]:
        """A transaction holding the rotation lock until it commits: one rotator at a time, everywhere."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(RotationLockRow)
                .where(RotationLockRow.id == 1)
                .values(holder=holder, taken_at=now)
            )
            yield self._transaction(session, now)

    async def read_authorities(self, kind: AuthorityKind | None = None) -> AuthorityRows:
        async with self._sessions() as session:
            return await self._transaction(session, datetime.now(UTC)).read_authorities(kind)

    async def authorities(self, kind: AuthorityKind | None = None) -> list[Authority]:
        return list((await self.read_authorities(kind)).trusted)

    async def bundle_sequence(self) -> int:
        async with self._sessions() as session:
            state = await session.get(BundleStateRow, 1)
            return state.sequence if state is not None else 0

    async def record_issued(self, entries: Sequence[JournalEntry]) -> None:
        """Journal a batch of issued SVIDs in one transaction (one executemany, no ORM objects)."""
        if not entries:
            return
        rows = [
            {
                "serial": e.serial,
                "kind": e.kind,
                "spiffe_id": e.spiffe_id,
                "authority_id": e.authority_id,
                "issued_at": e.issued_at,
                "not_after": e.not_after,
                "reissue_due": e.reissue_due,
            }
            for e in entries
        ]
        async with self._engine.begin() as connection:
            await connection.execute(insert(JournalRow), rows)

    async def journal(
        self, *, spiffe_id: str | None = None, reissue_due: bool | None = None, limit: int = 1000
    ) -> list[JournalEntry]:
        query = select(JournalRow).order_by(JournalRow.issued_at.desc()).limit(limit)
        if spiffe_id is not None:
            query = query.where(JournalRow.spiffe_id == spiffe_id)
        if reissue_due is not None:
            query = query.where(JournalRow.reissue_due == reissue_due)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [
            JournalEntry(
                serial=r.serial,
                kind=r.kind,
                spiffe_id=r.spiffe_id,
                authority_id=r.authority_id,
                issued_at=_utc(r.issued_at),
                not_after=_utc(r.not_after),
                reissue_due=r.reissue_due,
            )
            for r in rows
        ]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a writer commits; NORMAL sync is durable across process crashes in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
