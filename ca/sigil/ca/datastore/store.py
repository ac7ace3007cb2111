"""The datastore's one entry point, over SQLAlchemy 2 (async).

Everything that must agree across replicas goes through here: which authority is active, the bundle sequence, the
journal of issued SVIDs. Rotation takes a lock that both databases honour (a row lock on PostgreSQL, the write lock
on SQLite), so two servers on one PostgreSQL never rotate at the same time.
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
from sigil.ca.errors import DatastoreError
from sigil.ca.keys import PublicKey, public_key_der

__all__ = ["Datastore", "JournalEntry", "default_sqlite_url"]

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

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self._session = session
        self._now = now

    async def execute(self, statement: Executable) -> Result[Any]:
        """Run a statement of another table (the sealed key store's) inside this transaction."""
        return await self._session.execute(statement)

    async def authorities(self, kind: AuthorityKind | None = None) -> list[Authority]:
        query = select(AuthorityRow).order_by(AuthorityRow.created_at, AuthorityRow.authority_id)
        if kind is not None:
            query = query.where(AuthorityRow.kind == kind.value)
        return [_from_row(row) for row in (await self._session.scalars(query)).all()]

    async def put_authority(self, authority: Authority) -> None:
        """Insert or update ``authority``."""
        values = _to_row(authority, self._now)
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

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @classmethod
    async def open(cls, url: str, *, extra_migrations: Sequence[Path] = ()) -> Datastore:
        """Connect to ``url`` and bring its schema to the newest revision."""
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
        store = cls(engine)
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

    async def close(self) -> None:
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
            yield Transaction(session, now)

    async def authorities(self, kind: AuthorityKind | None = None) -> list[Authority]:
        async with self._sessions() as session:
            return await Transaction(session, datetime.now(UTC)).authorities(kind)

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
