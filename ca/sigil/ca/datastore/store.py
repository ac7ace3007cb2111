"""The datastore's one entry point, over SQLAlchemy 2 (async): open and migrate, transactions, the SVID journal.

Rotation takes a lock that both databases honour (a row lock on PostgreSQL, the write lock on SQLite), so two
servers on one PostgreSQL never rotate at the same time; what a locked step reads and writes is in
:mod:`sigil.ca.datastore.transaction`. A database that cannot be reached or refuses a statement leaves every method
here as :class:`~sigil.ca.errors.DatastoreUnavailableError` (:mod:`sigil.ca.datastore.failures`), never as a driver's
exception.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sigil.ca.authority import Authority, AuthorityKind
from sigil.ca.datastore.failures import translated
from sigil.ca.datastore.journal import Outstanding, mark_replaced, outstanding_of
from sigil.ca.datastore.journal_queue import JournalQueue
from sigil.ca.datastore.models import BundleStateRow, JournalRow, RotationLockRow
from sigil.ca.datastore.rowseal import AuthoritySeal
from sigil.ca.datastore.transaction import AuthorityRows, JournalEntry, Transaction, utc
from sigil.ca.errors import DatastoreError

__all__ = ["Datastore", "default_sqlite_url"]

_MIGRATIONS = Path(__file__).parent / "migrations"
#: An arbitrary constant naming Sigil's migration lock among PostgreSQL advisory locks.
_MIGRATION_LOCK_KEY = 0x51613100


#: Seconds to open a PostgreSQL connection, and to run one statement or wait for a pooled connection.
_CONNECT_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 15.0


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'datastore.sqlite3'}"


class Datastore:
    """The CA's datastore on one database URL. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, *, seal: AuthoritySeal | None = None) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._seal = seal
        #: Refused rows already logged, so that a refresh every second does not repeat the same error.
        self._reported: set[tuple[str, str, str]] = set()
        self._journal = JournalQueue(self._write_journal)

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
        elif url.startswith("postgresql+asyncpg"):
            # Bounded waits on a database that stopped answering (a paused host, a partition), inside the agents'
            # 30 s request timeout: a request then gets 503 datastore_unavailable, never a hang. Found by the
            # database drill (tests/reliability/test_database_restart.py) with PostgreSQL frozen by SIGSTOP.
            kwargs["connect_args"] = {
                "timeout": _CONNECT_TIMEOUT,
                "command_timeout": _COMMAND_TIMEOUT,
            }
            kwargs["pool_timeout"] = _COMMAND_TIMEOUT
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
            # Imported here: only opening a datastore migrates, and Alembic is 130 modules and 10 MB that a
            # ``sigil-server`` verb speaking to the admin socket never needs.
            from alembic import command
            from alembic.config import Config

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
        with translated("a rotation transaction"):
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(RotationLockRow)
                    .where(RotationLockRow.id == 1)
                    .values(holder=holder, taken_at=now)
                )
                yield self._transaction(session, now)

    async def read_authorities(self, kind: AuthorityKind | None = None) -> AuthorityRows:
        with translated("reading authorities"):
            async with self._sessions() as session:
                return await self._transaction(session, datetime.now(UTC)).read_authorities(kind)

    async def authorities(self, kind: AuthorityKind | None = None) -> list[Authority]:
        return list((await self.read_authorities(kind)).trusted)

    async def bundle_sequence(self) -> int:
        with translated("reading the bundle sequence"):
            async with self._sessions() as session:
                state = await session.get(BundleStateRow, 1)
                return state.sequence if state is not None else 0

    async def record_issued(self, entries: Sequence[JournalEntry]) -> None:
        """Journal a batch of issued SVIDs; it has committed when this returns.

        Batches that arrive while another is being written go together in the next transaction
        (:mod:`sigil.ca.datastore.journal_queue`).
        """
        if entries:
            await self._journal.record(entries)

    async def _write_journal(self, entries: Sequence[JournalEntry]) -> None:
        """One transaction: the rows (one executemany, no ORM objects) and the re-issues they record."""
        rows = [
            {
                "serial": e.serial,
                "kind": e.kind,
                "spiffe_id": e.spiffe_id,
                "authority_id": e.authority_id,
                "issued_at": e.issued_at,
                "not_after": e.not_after,
                "reissue_due": e.reissue_due,
                "holder": e.holder,
            }
            for e in entries
        ]
        with translated("journaling issued SVIDs"):
            async with self._engine.begin() as connection:
                # In the same transaction: a revoke never sees the fresh SVID without the replacement.
                await mark_replaced(connection, entries)
                await connection.execute(insert(JournalRow), rows)

    async def prune_journal(self, expired_before: datetime, *, batch: int = 5000) -> int:
        """Delete journal rows of SVIDs that expired before ``expired_before``; returns how many.

        In transactions of ``batch`` rows, so that issuance journaling (which waits for SQLite's write lock) is
        never held up for long by a large backlog. Only expired rows go: revocation's count, re-issue marks and
        the listing of unexpired SVIDs read unexpired rows alone.
        """
        doomed = select(JournalRow.serial).where(JournalRow.not_after < expired_before).limit(batch)
        removed = 0
        with translated("pruning the journal"):
            while True:
                async with self._engine.begin() as connection:
                    result = await connection.execute(
                        delete(JournalRow).where(JournalRow.serial.in_(doomed.scalar_subquery()))
                    )
                count = int(result.rowcount or 0)
                removed += count
                if count < batch:
                    return removed

    async def journal_size(self) -> int:
        """How many rows the journal holds (expired ones not yet pruned included)."""
        with translated("reading the journal"):
            async with self._sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(JournalRow)) or 0)

    async def outstanding(self, authority_id: str, now: datetime) -> Outstanding:
        """What revoking ``authority_id`` now would cut (see :mod:`sigil.ca.datastore.journal`)."""
        with translated("reading the journal"):
            async with self._sessions() as session:
                return await outstanding_of(session.execute, authority_id, now)

    async def journal(
        self, *, spiffe_id: str | None = None, reissue_due: bool | None = None, limit: int = 1000
    ) -> list[JournalEntry]:
        query = select(JournalRow).order_by(JournalRow.issued_at.desc()).limit(limit)
        if spiffe_id is not None:
            query = query.where(JournalRow.spiffe_id == spiffe_id)
        if reissue_due is not None:
            query = query.where(JournalRow.reissue_due == reissue_due)
        with translated("reading the journal"):
            async with self._sessions() as session:
                rows = (await session.scalars(query)).all()
        return [
            JournalEntry(
                serial=r.serial,
                kind=r.kind,
                spiffe_id=r.spiffe_id,
                authority_id=r.authority_id,
                issued_at=utc(r.issued_at),
                not_after=utc(r.not_after),
                reissue_due=r.reissue_due,
                holder=r.holder,
                replaced_at=utc(r.replaced_at) if r.replaced_at is not None else None,
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
