"""What the policy feed keeps in the shared database: admin-applied policies and the revision of the set.

Every replica computes the set in force from the same sources (the admin table, the cluster's CRDs, its policy
directory), so every replica reaches the same content; what they must also agree on is its *number*, which agents
compare. The number lives in one row beside the digest of the content it numbers: a replica whose content changed
either finds its digest already there (another replica got there first: take that revision) or takes the next
number under the row's lock. A replica never bumps for content it has not itself seen change, so two replicas
briefly holding different content do not chase each other's numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AdminPolicy", "AdminTable", "PolicyState", "PolicyTables"]

_metadata = MetaData()
_admin = Table(
    "admin_policies",
    _metadata,
    Column("kind", String(64), primary_key=True),
    Column("namespace", String(253), primary_key=True),
    Column("name", String(253), primary_key=True),
    Column("document", Text),
    Column("updated_at", DateTime(timezone=True)),
)
_state = Table(
    "policy_state",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", Integer),
    Column("digest", String(64)),
    Column("admin_generation", Integer),
    Column("updated_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The shared row: the revision numbering ``digest``, and the admin table's generation."""

    revision: int
    digest: str
    admin_generation: int


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """One policy applied through the admin API, as the resource document it was applied as."""

    kind: str
    namespace: str
    name: str
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AdminTable:
    """The whole admin table as one transaction left it, and the generation that transaction gave it."""

    generation: int
    policies: list[AdminPolicy]


class PolicyTables:
    """The two policy tables over the datastore's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def state(self) -> PolicyState:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_state).where(_state.c.id == 1))).one()
        return PolicyState(row.revision, row.digest, row.admin_generation)

    async def settle(self, digest: str, *, now: datetime) -> int:
        """The revision of content ``digest``: the stored one when it is the same content, else the next one."""
        async with self._engine.begin() as connection:
            # Writing the row first takes its lock on PostgreSQL and the write lock on SQLite, so two replicas
            # settling at once are serialised and the second sees the first's digest.
            row = (
                await connection.execute(
                    update(_state)
                    .where(_state.c.id == 1)
                    .values(updated_at=now)
                    .returning(_state.c.revision, _state.c.digest)
                )
            ).one()
            if row.digest == digest:
                return int(row.revision)
            revision = int(row.revision) + 1
            await connection.execute(
                update(_state).where(_state.c.id == 1).values(revision=revision, digest=digest)
            )
        return revision

    async def admin_policies(self) -> list[AdminPolicy]:
        async with self._engine.connect() as connection:
            return await self._admin_rows(connection)

    async def put_admin_policies(
        self, policies: Sequence[AdminPolicy], *, now: datetime
    ) -> AdminTable:
        """Create or replace ``policies`` in one transaction, and move the generation; the table it leaves.

        The table is read back in the same transaction, so the caller need not ask again (two more round trips
        to the database before the change is published) and what it gets is exactly what that generation holds.
        """
        async with self._engine.begin() as connection:
            generation = await self._bump(connection, now)
            for policy in policies:
                key = (
                    _admin.c.kind == policy.kind,
                    _admin.c.namespace == policy.namespace,
                    _admin.c.name == policy.name,
                )
                await connection.execute(delete(_admin).where(*key))
                await connection.execute(
                    _admin.insert().values(
                        kind=policy.kind,
                        namespace=policy.namespace,
                        name=policy.name,
                        document=json.dumps(policy.document, sort_keys=True, default=str),
                        updated_at=now,
                    )
                )
            return AdminTable(generation, await self._admin_rows(connection))

    async def delete_admin_policy(
        self, kind: str, namespace: str, name: str, *, now: datetime
    ) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                delete(_admin).where(
                    _admin.c.kind == kind, _admin.c.namespace == namespace, _admin.c.name == name
                )
            )
            if not result.rowcount:
                return False
            await self._bump(connection, now)
        return True

    @staticmethod
    async def _admin_rows(connection: AsyncConnection) -> list[AdminPolicy]:
        query = select(_admin).order_by(_admin.c.kind, _admin.c.namespace, _admin.c.name)
        rows = (await connection.execute(query)).all()
        return [AdminPolicy(r.kind, r.namespace, r.name, json.loads(r.document)) for r in rows]

    @staticmethod
    async def _bump(connection: AsyncConnection, now: datetime) -> int:
        """Move the admin table's generation; the new one."""
        result = await connection.execute(
            update(_state)
            .where(_state.c.id == 1)
            .values(admin_generation=_state.c.admin_generation + 1, updated_at=now)
            .returning(_state.c.admin_generation)
        )
        return int(result.scalar_one())
