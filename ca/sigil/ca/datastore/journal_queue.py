"""Journaling the batches that arrive together in one transaction (group commit), one transaction at a time.

Four agents asking at once used to open four journal transactions at once. On SQLite only one may write: the others
slept in SQLite's busy handler (a back-off of milliseconds, https://www.sqlite.org/c3ref/busy_timeout.html) while
holding their requests' answers, and each transaction cost its own dozen hops to the driver's thread. Here the
first caller writes what is queued; the batches that queue meanwhile go together in the next transaction, written
by whichever of their callers gets the lock first. Each caller returns only once its own rows have committed, so an
SVID is never answered before it is journaled; when a shared transaction fails, every caller in it gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from sigil.ca.datastore.transaction import JournalEntry
from sigil.ca.errors import DatastoreUnavailableError

__all__ = ["JournalQueue"]

Write = Callable[[Sequence[JournalEntry]], Awaitable[None]]


class _Batch:
    """One caller's rows, and what became of them once a transaction took them."""

    __slots__ = ("entries", "error", "taken")

    def __init__(self, entries: Sequence[JournalEntry]) -> None:
        self.entries = entries
        self.taken = False
        self.error: DatastoreUnavailableError | None = None


class JournalQueue:
    """Runs ``write`` over every batch queued since the last transaction, one transaction at a time."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._lock = asyncio.Lock()
        self._queued: list[_Batch] = []

    async def record(self, entries: Sequence[JournalEntry]) -> None:
        """Journal ``entries``; returns once they have committed, raises what the transaction that took them raised."""
        batch = _Batch(entries)
        self._queued.append(batch)
        async with self._lock:
            if not batch.taken:
                # Still queued: this caller writes it, with everything queued behind the last transaction.
                group, self._queued = self._queued, []
                try:
                    await self._write([e for queued in group for e in queued.entries])
                except DatastoreUnavailableError as err:
                    for queued in group:
                        queued.error = err
                except BaseException:
                    # Cancelled (or a bug): the others cannot know whether their rows committed; they answer 503.
                    failed = DatastoreUnavailableError(
                        "journaling issued SVIDs", "the transaction it shared did not finish"
                    )
                    for queued in group:
                        queued.error = failed
                    raise
                finally:
                    for queued in group:
                        queued.taken = True
        if batch.error is not None:
            # Each caller raises its own error: one exception object raised by several tasks would gather all
            # their tracebacks.
            raise DatastoreUnavailableError(
                batch.error.operation, batch.error.cause
            ) from batch.error
