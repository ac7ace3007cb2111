"""What the SVID journal says about a tainted authority: which of its SVIDs were replaced, and which are still out.

Revoking an authority drops it from the bundle, so every SVID it signed stops verifying at once; an SVID still held
by a workload then cuts that workload's connections. A taint marks what the authority signed for re-issue
(:meth:`~sigil.ca.datastore.transaction.Transaction.mark_reissue_due`); this module records each replacement as the
fresh SVID is journaled, and counts what is left, so ``authority revoke`` can refuse while anything is.

A fresh SVID replaces every marked row of the same kind, SPIFFE ID and holder (the agent that asked), not just one:
an agent renews at half-life, so a workload has up to two unexpired SVIDs of one authority, and the older one is no
longer held by anybody. The one case this cannot tell apart is two workloads of one agent with the same SPIFFE ID
but different selectors; the agent re-issues both in the same pass after a taint, so the gap is one batch long.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import bindparam, func, select, true, update
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from sigil.ca.datastore.models import JournalRow
from sigil.ca.datastore.transaction import JournalEntry, utc

__all__ = ["Execute", "Outstanding", "mark_replaced", "outstanding_of"]

Execute = Callable[[Executable], Awaitable[Result[Any]]]

#: How the journal names SVIDs that no agent asked for (``x509 mint``, agentless workloads, rows from before 0004).
_NO_HOLDER = ""


@dataclass(frozen=True, slots=True)
class Outstanding:
    """The unexpired SVIDs of a tainted authority that no re-issue has replaced yet: what revoking it would cut."""

    authority_id: str
    count: int = 0
    #: How many per holder (an agent's SPIFFE ID, the server's, or ``""`` for SVIDs no agent asked for).
    holders: Mapping[str, int] = field(default_factory=dict)
    #: When the last of them expires; after that, revoking cuts nothing.
    last_expiry: datetime | None = None

    def describe(self) -> str:
        """One sentence for an operator: how many, held where, until when."""
        if self.count == 0:
            return "every SVID it signed has been replaced or has expired"
        named = [
            f"{holder or 'no agent (minted by hand or agentless)'} ({n})"
            for holder, n in sorted(self.holders.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
        last = f"{self.last_expiry:%Y-%m-%dT%H:%M:%SZ}" if self.last_expiry else "unknown"
        return (
            f"{self.count} unexpired SVID(s) it signed have not been replaced since the taint, "
            f"held through {len(named)} holder(s): {shown}; the last expires {last}"
        )


#: Whether any unexpired row is marked for re-issue and not yet replaced (built once: every batch asks).
_ANY_MARKED = (
    select(JournalRow.serial)
    .where(
        JournalRow.reissue_due == true(),
        JournalRow.not_after > bindparam("b_now"),
        JournalRow.replaced_at.is_(None),
    )
    .limit(1)
)
#: Marks the rows a fresh SVID replaces, one parameter set per kind, SPIFFE ID and holder.
_MARK_REPLACED = (
    update(JournalRow)
    .where(
        JournalRow.reissue_due.is_(True),
        JournalRow.replaced_at.is_(None),
        JournalRow.kind == bindparam("b_kind"),
        JournalRow.spiffe_id == bindparam("b_spiffe_id"),
        func.coalesce(JournalRow.holder, _NO_HOLDER) == bindparam("b_holder"),
    )
    .values(replaced_at=bindparam("b_now"))
    .execution_options(synchronize_session=False)
)


async def mark_replaced(connection: AsyncConnection, entries: Sequence[JournalEntry]) -> None:
    """Record that ``entries`` (about to be journaled) replace the marked rows of their kind, ID and holder.

    A marked row is replaced as of the earliest fresh entry of its kind, ID and holder (a transaction may carry
    batches issued a few milliseconds apart).
    """
    replaced_at: dict[tuple[str, str, str], datetime] = {}
    for e in entries:
        key = (e.kind, e.spiffe_id, e.holder or _NO_HOLDER)
        if key not in replaced_at or e.issued_at < replaced_at[key]:
            replaced_at[key] = e.issued_at
    if not replaced_at:
        return
    # Almost always nothing is marked (no taint in the SVIDs' lifetime): one indexed look spares a hundred UPDATEs,
    # which were two thirds of the cost of journaling a batch. An expired marked row no longer counts anywhere.
    pending = await connection.execute(_ANY_MARKED, {"b_now": min(replaced_at.values())})
    if pending.first() is None:
        return
    rows = [
        {"b_kind": k, "b_spiffe_id": s, "b_holder": h, "b_now": now}
        for (k, s, h), now in sorted(replaced_at.items())
    ]
    await connection.execute(_MARK_REPLACED, rows)


async def outstanding_of(execute: Execute, authority_id: str, now: datetime) -> Outstanding:
    """What revoking ``authority_id`` at ``now`` would cut (nothing until a taint has marked its SVIDs).

    ``execute`` runs the query: a session's, or a locked :class:`Transaction`'s so that a revoke counts and
    revokes under one lock.
    """
    holder = func.coalesce(JournalRow.holder, _NO_HOLDER)
    query = (
        select(holder, func.count(), func.max(JournalRow.not_after))
        .where(
            JournalRow.authority_id == authority_id,
            JournalRow.reissue_due.is_(True),
            JournalRow.replaced_at.is_(None),
            JournalRow.not_after > now,
        )
        .group_by(holder)
    )
    result = await execute(query)
    holders: dict[str, int] = {}
    last: datetime | None = None
    grouped = cast("list[tuple[str, int, datetime]]", result.all())
    for name, count, when in grouped:
        latest = utc(when)
        holders[str(name)] = int(count)
        last = latest if last is None or latest > last else last
    return Outstanding(authority_id, sum(holders.values()), holders, last)
