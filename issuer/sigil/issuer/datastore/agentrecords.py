"""Attested agents in the shared database: which agent SVID is current, which was just issued, and operator bans.

SPIRE's rule (``pkg/server/api/agent/v1/service.go`` RenewAgent and the agent-authorization middleware): an attested
agent has one current SVID serial and at most one newly issued serial; presenting the new one makes it current and
retires the old, and any other serial of that agent ID is refused. A copied agent SVID therefore stops working as
soon as the real agent has renewed and used its new SVID, and each replica sees that through this table.

Attesting again replaces both serials (the agent proved itself afresh). Evicting deletes the row, so every SVID of
that agent is refused until it attests again; banning keeps the row with no serial and refuses attestation too,
until unbanning deletes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sigil.ca.datastore.failures import connected, transaction
from sigil.ca.datastore.transaction import utc

__all__ = ["AgentRecords", "AttestedAgent"]

_agents = Table(
    "attested_agents",
    MetaData(),
    Column("agent_id", String(2048), primary_key=True),
    Column("method", String(16)),
    Column("serial", String(64)),
    Column("new_serial", String(64)),
    Column("node_uid", String(64)),
    Column("banned", Boolean),
    Column("expires_at", DateTime(timezone=True)),
    Column("attested_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class AttestedAgent:
    """One attested agent: how it attested, its current and newly issued SVID serials, and whether it is banned."""

    agent_id: str
    method: str
    serial: str
    expires_at: datetime
    attested_at: datetime
    new_serial: str | None = None
    node_uid: str | None = None
    banned: bool = False

    def holds(self, serial: str) -> bool:
        """True when ``serial`` is the agent's current SVID or the one just issued to it."""
        return bool(serial) and serial in (self.serial, self.new_serial)


#: Every agent request reads its agent's record: the statement is built once, not per request.
_GET = select(_agents).where(_agents.c.agent_id == bindparam("agent_id"))


def _record(r: RowMapping) -> AttestedAgent:
    return AttestedAgent(
        agent_id=r["agent_id"],
        method=r["method"],
        serial=r["serial"] or "",
        expires_at=utc(r["expires_at"]),
        attested_at=utc(r["attested_at"]),
        new_serial=r["new_serial"],
        node_uid=r["node_uid"],
        banned=bool(r["banned"]),
    )


class AgentRecords:
    """The ``attested_agents`` table over the datastore's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, agent_id: str) -> AttestedAgent | None:
        async with connected(self._engine, "get") as connection:
            result = await connection.execute(_GET, {"agent_id": agent_id})
            row = result.mappings().first()
        return None if row is None else _record(row)

    async def list(self) -> Sequence[AttestedAgent]:
        async with connected(self._engine, "list") as connection:
            rows = (
                (await connection.execute(select(_agents).order_by(_agents.c.agent_id)))
                .mappings()
                .all()
            )
        return [_record(r) for r in rows]

    async def attested(
        self,
        agent_id: str,
        *,
        method: str,
        serial: str,
        expires_at: datetime,
        now: datetime,
        node_uid: str | None = None,
    ) -> bool:
        """Record a fresh attestation (every earlier SVID of the ID is retired); False when the ID is banned."""
        async with transaction(self._engine, "attested") as connection:
            result = await connection.execute(
                update(_agents)
                .where(_agents.c.agent_id == agent_id, _agents.c.banned.is_(False))
                .values(
                    method=method,
                    serial=serial,
                    new_serial=None,
                    node_uid=node_uid,
                    expires_at=expires_at,
                    attested_at=now,
                    updated_at=now,
                )
            )
            if result.rowcount:
                return True
            banned = await connection.scalar(
                select(_agents.c.banned).where(_agents.c.agent_id == agent_id)
            )
            if banned:
                return False
            await connection.execute(
                insert(_agents).values(
                    agent_id=agent_id,
                    method=method,
                    serial=serial,
                    new_serial=None,
                    node_uid=node_uid,
                    banned=False,
                    expires_at=expires_at,
                    attested_at=now,
                    updated_at=now,
                )
            )
        return True

    async def renewed(
        self, agent_id: str, *, presented: str, serial: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record ``serial`` as just issued to an agent that presented ``presented``; False if that no longer holds.

        The update is conditional on the presented serial still being the current one, so an eviction, a ban or a
        clone's renewal that raced ahead is not overwritten.
        """
        async with transaction(self._engine, "renewed") as connection:
            result = await connection.execute(
                update(_agents)
                .where(
                    _agents.c.agent_id == agent_id,
                    _agents.c.serial == presented,
                    _agents.c.banned.is_(False),
                )
                .values(new_serial=serial, expires_at=expires_at, updated_at=now)
            )
        return bool(result.rowcount)

    async def promote(self, agent_id: str, serial: str, *, now: datetime) -> bool:
        """Make the newly issued ``serial`` current, retiring the old one; False when it is not the new one."""
        async with transaction(self._engine, "promote") as connection:
            result = await connection.execute(
                update(_agents)
                .where(
                    _agents.c.agent_id == agent_id,
                    _agents.c.new_serial == serial,
                    _agents.c.banned.is_(False),
                )
                .values(serial=serial, new_serial=None, updated_at=now)
            )
        return bool(result.rowcount)

    async def evict(self, agent_id: str) -> bool:
        """Forget the agent, so its SVIDs are refused until it attests again; a ban stays in force."""
        async with transaction(self._engine, "evict") as connection:
            result = await connection.execute(
                delete(_agents).where(_agents.c.agent_id == agent_id, _agents.c.banned.is_(False))
            )
            if result.rowcount:
                return True
            found = await connection.scalar(
                select(_agents.c.agent_id).where(_agents.c.agent_id == agent_id)
            )
        return found is not None

    async def set_banned(self, agent_id: str, banned: bool, *, now: datetime) -> bool:
        """Ban (every SVID and attestation refused), or unban: forget the banned row, so the agent attests anew.

        False when there is no such agent (to unban: no such banned agent).
        """
        async with transaction(self._engine, "set banned") as connection:
            if banned:
                result = await connection.execute(
                    update(_agents)
                    .where(_agents.c.agent_id == agent_id)
                    .values(banned=True, serial="", new_serial=None, updated_at=now)
                )
            else:
                result = await connection.execute(
                    delete(_agents).where(
                        _agents.c.agent_id == agent_id, _agents.c.banned.is_(True)
                    )
                )
        return bool(result.rowcount)
