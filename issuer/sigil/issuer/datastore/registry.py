"""What the issuer keeps in the shared database: registration entries, join tokens (attested agents: agentrecords).

The tables live in the CA's database (its ``engine``) on an Alembic branch of their own (``migrations/``), so two
servers on one PostgreSQL see the same entries and a join token can be spent only once: spending is one conditional
``UPDATE`` whose row count says who won. Join tokens are stored as SHA-256 digests; the token itself is shown once.

The IDs under ``/sigil/agent`` and ``/sigil/server`` are the issuer's own: an agent's ID is what lets a caller ask
for other workloads' SVIDs, the server's is what agents trust as the issuer. No entry, workload ID template or admin
mint may hand one out (:func:`refuse_reserved`, over :mod:`sigil.ca.reserved_ids`); only attestation and the server itself do.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from sigil.ca.datastore.failures import connected, transaction
from sigil.ca.reserved_ids import reserved_path
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.datastore.agentrecords import AgentRecords, AttestedAgent
from sigil.issuer.errors import NotEntitledError

__all__ = [
    "MIGRATIONS",
    "AttestedAgent",
    "Entry",
    "JoinToken",
    "Registry",
    "refuse_reserved",
]

_log = structlog.get_logger(__name__)
#: The issuer's Alembic version location, passed to ``Datastore.open(extra_migrations=...)``.
MIGRATIONS = Path(__file__).parent / "migrations"

_metadata = MetaData()
_entries = Table(
    "registration_entries",
    _metadata,
    Column("entry_id", String(36), primary_key=True),
    Column("spiffe_id", String(2048)),
    Column("parent_id", String(2048)),
    Column("selectors", Text),
    Column("x509_svid_ttl", Integer),
    Column("jwt_svid_ttl", Integer),
    Column("dns_names", Text),
    Column("created_at", DateTime(timezone=True)),
)
_tokens = Table(
    "join_tokens",
    _metadata,
    Column("digest", String(64), primary_key=True),
    Column("agent_suffix", String(64)),
    Column("created_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("used_at", DateTime(timezone=True)),
)


def refuse_reserved(spiffe_id: SpiffeId, *, source: str) -> None:
    """Raise :class:`NotEntitledError` when ``spiffe_id`` is one of Sigil's agent or server IDs.

    ``source`` says what asked for it (an entry, the workload ID template, ``x509 mint``), for the message.
    """
    prefix = reserved_path(spiffe_id)
    if prefix is not None:
        raise NotEntitledError(
            str(spiffe_id),
            f"{prefix} and the IDs under it are reserved for Sigil's own "
            f"{'agents (given by attestation)' if prefix.endswith('agent') else 'server'}; "
            f"{source} may not claim them",
        )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """A registration entry: workloads under ``parent_id`` whose selectors include all of ``selectors``."""

    entry_id: str
    spiffe_id: SpiffeId
    parent_id: SpiffeId
    selectors: frozenset[str]
    x509_svid_ttl: timedelta | None = None
    jwt_svid_ttl: timedelta | None = None
    dns_names: tuple[str, ...] = ()

    def matches(self, presented: Iterable[str]) -> bool:
        """True when every selector of the entry is among ``presented`` (SPIRE's subset rule)."""
        return self.selectors <= frozenset(presented)


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A freshly generated join token: shown to the operator once, stored only as its digest."""

    token: str
    agent_suffix: str
    expires_at: datetime


class Registry:
    """Entries, join tokens and attested agents over the datastore's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # ------------------------------------------------------------------ entries
    async def create_entry(
        self,
        spiffe_id: SpiffeId,
        parent_id: SpiffeId,
        selectors: Iterable[str],
        *,
        now: datetime,
        x509_svid_ttl: timedelta | None = None,
        jwt_svid_ttl: timedelta | None = None,
        dns_names: Sequence[str] = (),
    ) -> Entry:
        refuse_reserved(spiffe_id, source="a registration entry")
        chosen = frozenset(selectors)
        if not chosen or any(":" not in s for s in chosen):
            raise ValueError("an entry needs at least one selector, each written type:value")
        entry = Entry(
            str(uuid.uuid4()),
            spiffe_id,
            parent_id,
            chosen,
            x509_svid_ttl,
            jwt_svid_ttl,
            tuple(dns_names),
        )
        async with transaction(self._engine, "create entry") as connection:
            await connection.execute(
                insert(_entries).values(
                    entry_id=entry.entry_id,
                    spiffe_id=str(spiffe_id),
                    parent_id=str(parent_id),
                    selectors="\n".join(sorted(chosen)),
                    x509_svid_ttl=int(x509_svid_ttl.total_seconds()) if x509_svid_ttl else None,
                    jwt_svid_ttl=int(jwt_svid_ttl.total_seconds()) if jwt_svid_ttl else None,
                    dns_names="\n".join(dns_names),
                    created_at=now,
                )
            )
        return entry

    async def entries(self, *, parent_id: SpiffeId | None = None) -> list[Entry]:
        query = select(_entries).order_by(_entries.c.spiffe_id, _entries.c.entry_id)
        if parent_id is not None:
            query = query.where(_entries.c.parent_id == str(parent_id))
        async with connected(self._engine, "entries") as connection:
            rows = (await connection.execute(query)).mappings().all()
        entries = []
        for row in rows:
            spiffe_id = SpiffeId.parse(row["spiffe_id"])
            if reserved_path(spiffe_id) is not None:
                # Written before this check existed, or straight into the database: never served.
                _log.error(
                    "entry.reserved_id_refused", entry_id=row["entry_id"], spiffe_id=str(spiffe_id)
                )
                continue
            entries.append(
                Entry(
                    row["entry_id"],
                    spiffe_id,
                    SpiffeId.parse(row["parent_id"]),
                    frozenset(row["selectors"].split("\n")),
                    timedelta(seconds=row["x509_svid_ttl"]) if row["x509_svid_ttl"] else None,
                    timedelta(seconds=row["jwt_svid_ttl"]) if row["jwt_svid_ttl"] else None,
                    tuple(n for n in (row["dns_names"] or "").split("\n") if n),
                )
            )
        return entries

    async def delete_entry(self, entry_id: str) -> bool:
        async with transaction(self._engine, "delete entry") as connection:
            result = await connection.execute(
                delete(_entries).where(_entries.c.entry_id == entry_id)
            )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ join tokens
    async def generate_join_token(self, *, ttl: timedelta, now: datetime) -> JoinToken:
        token = secrets.token_urlsafe(32)
        # The agent's ID names the token by a digest prefix, never by the token (which would be a credential).
        suffix = _digest(token)[:32]
        async with transaction(self._engine, "generate join token") as connection:
            await connection.execute(
                insert(_tokens).values(
                    digest=_digest(token),
                    agent_suffix=suffix,
                    created_at=now,
                    expires_at=now + ttl,
                    used_at=None,
                )
            )
        return JoinToken(token, suffix, now + ttl)

    async def spend_join_token(self, token: str, *, now: datetime) -> str | None:
        """Mark ``token`` used if it is live and unused; its agent suffix, or None when someone else won."""
        digest = _digest(token)
        async with transaction(self._engine, "spend join token") as connection:
            result = await connection.execute(
                update(_tokens)
                .where(
                    _tokens.c.digest == digest,
                    _tokens.c.used_at.is_(None),
                    _tokens.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if result.rowcount != 1:
                return None
            suffix = await connection.scalar(
                select(_tokens.c.agent_suffix).where(_tokens.c.digest == digest)
            )
        return str(suffix)

    # ------------------------------------------------------------------ agents
    async def agents(self) -> Sequence[AttestedAgent]:
        """Every attested agent (the table itself is :class:`~sigil.issuer.datastore.agentrecords.AgentRecords`')."""
        return await AgentRecords(self._engine).list()
