"""Batches journaled while another is being written share the next transaction, and its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sigil_testing.ca import make_csr

from sigil.ca import SpiffeId
from sigil.ca.datastore.journal_queue import JournalQueue
from sigil.ca.datastore.transaction import JournalEntry
from sigil.ca.errors import DatastoreUnavailableError
from sigil.ca.service import CertificateAuthority, X509Request

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _entries(name: str, count: int = 2) -> list[JournalEntry]:
    return [
        JournalEntry(
            serial=f"{name}-{i}",
            kind="x509",
            spiffe_id=f"spiffe://example.org/{name}",
            authority_id="a",
            issued_at=NOW,
            not_after=NOW + timedelta(hours=1),
        )
        for i in range(count)
    ]


class _Database:
    """Records each transaction's rows; the first one waits until the test lets it commit."""

    def __init__(self, *, fail: bool = False) -> None:
        self.transactions: list[list[str]] = []
        self.first_may_commit = asyncio.Event()
        self.later_may_commit: asyncio.Event | None = None
        #: Set when a transaction is held by :attr:`later_may_commit`.
        self.holding = asyncio.Event()
        self.fail = fail

    def hold_every_transaction(self) -> None:
        """From now on every transaction waits for :attr:`later_may_commit`, which nobody sets."""
        self.later_may_commit = asyncio.Event()

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        self.transactions.append([e.serial for e in entries])
        if len(self.transactions) == 1:
            await self.first_may_commit.wait()
        elif self.later_may_commit is not None:
            self.holding.set()
            await self.later_may_commit.wait()
        elif self.fail:
            raise DatastoreUnavailableError("journaling issued SVIDs", "disk I/O error")


async def test_batches_queued_behind_a_transaction_go_together_in_the_next() -> None:
    """One transaction at a time; the three batches that waited are written in one, and each caller returns."""
    database = _Database()
    queue = JournalQueue(database.write)
    first = asyncio.create_task(queue.record(_entries("a")))
    await asyncio.sleep(0)  # the first transaction has begun
    waiting = [asyncio.create_task(queue.record(_entries(n))) for n in ("b", "c", "d")]
    await asyncio.sleep(0)
    assert len(database.transactions) == 1
    database.first_may_commit.set()
    await asyncio.gather(first, *waiting)
    assert database.transactions == [
        ["a-0", "a-1"],
        ["b-0", "b-1", "c-0", "c-1", "d-0", "d-1"],
    ]


async def test_a_failed_shared_transaction_fails_every_batch_in_it() -> None:
    """None of the callers whose rows were in a failed transaction returns as if journaled."""
    database = _Database(fail=True)
    queue = JournalQueue(database.write)
    first = asyncio.create_task(queue.record(_entries("a")))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(queue.record(_entries(n))) for n in ("b", "c")]
    await asyncio.sleep(0)
    database.first_may_commit.set()
    await first
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, DatastoreUnavailableError) for o in outcomes)
    assert all("disk I/O error" in str(o) for o in outcomes)
    # The queue goes on: the next batch gets a transaction of its own.
    database.fail = False
    await queue.record(_entries("e"))
    assert database.transactions[-1] == ["e-0", "e-1"]


async def test_a_cancelled_transaction_fails_the_batches_that_shared_it() -> None:
    """When the caller writing a transaction is cancelled, the others in it learn that it did not finish."""
    database = _Database()
    queue = JournalQueue(database.write)
    first = asyncio.create_task(queue.record(_entries("x")))
    await asyncio.sleep(0)
    a = asyncio.create_task(queue.record(_entries("a")))
    b = asyncio.create_task(queue.record(_entries("b")))
    await asyncio.sleep(0)
    database.hold_every_transaction()
    database.first_may_commit.set()
    await first
    await database.holding.wait()
    assert database.transactions[1] == ["a-0", "a-1", "b-0", "b-1"]
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    with pytest.raises(DatastoreUnavailableError, match="did not finish"):
        await b


async def test_concurrent_batches_are_all_journaled(ca: CertificateAuthority) -> None:
    """Agents asking at once each get their SVIDs, and every one of them is in the journal."""
    csr, _ = make_csr()
    batches = [
        [X509Request(SpiffeId.parse(f"spiffe://example.org/w{b}-{i}"), csr=csr) for i in range(5)]
        for b in range(6)
    ]
    minted = await asyncio.gather(
        *(ca.mint_x509_svids(b, holder=f"h{n}") for n, b in enumerate(batches))
    )
    journal = {e.serial: e for e in await ca.store.journal()}
    for n, svids in enumerate(minted):
        for svid in svids:
            assert journal[svid.serial_hex].holder == f"h{n}"
            assert journal[svid.serial_hex].spiffe_id == str(svid.spiffe_id)
    assert len(journal) == 30
