"""Coalescing X509-SVID requests into batches, as SPIRE's agent batches its CSRs (reference §4).

When a node comes up, or a Deployment scales out, dozens of workloads ask for their first SVID within
milliseconds. Each would cost the issuer a TLS request and a database transaction; gathered for a short window
(``rotation.batch_window``, 20 ms by default) they cost one per :data:`~sigil.issuer.client` batch of at most
:data:`MAX_BATCH` items. Rotations, which the scheduler finds due together, skip the window and go out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog

from sigil.ca.errors import SigilError
from sigil.issuer.client import X509SvidRequest, X509SvidResult
from sigil.node_agent.errors import IssuerUnreachableError
from sigil.node_agent.upstream.issuer_link import call_issuer

__all__ = ["MAX_BATCH", "IssueBatch", "X509Batcher"]

#: The most items one request carries (the issuer's ``wire.MAX_BATCH``; SPIRE caps its batches at 500 too).
MAX_BATCH = 500

IssueBatch = Callable[[Sequence[X509SvidRequest]], Awaitable[list[X509SvidResult]]]

_log = structlog.get_logger(__name__)


class X509Batcher:
    """Sends requests to the issuer in batches; owns its flush task (:meth:`aclose` cancels and awaits it)."""

    def __init__(self, issue: IssueBatch, *, window: float, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._issue = issue
        self._window = window
        self._max_batch = max_batch
        self._pending: list[tuple[X509SvidRequest, asyncio.Future[X509SvidResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.batches_sent = 0

    async def submit(self, request: X509SvidRequest) -> X509SvidResult:
        """The issuer's answer for ``request``, sent with whatever else arrives within the window."""
        future: asyncio.Future[X509SvidResult] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if len(self._pending) >= self._max_batch:
            self._send_pending()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later(), name="sigil-batch-window")
        return await future

    async def submit_many(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        """Answers for ``requests`` in order, sent now in as few batches as the cap allows.

        Raises IssuerUnreachableError if any batch could not be sent (the caller retries them all).
        """
        results: list[X509SvidResult] = []
        for start in range(0, len(requests), self._max_batch):
            chunk = requests[start : start + self._max_batch]
            results.extend(await self._send(chunk))
        return results

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._window)
        finally:
            self._flusher = None
        self._send_pending()

    def _send_pending(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.create_task(self._deliver(batch), name="sigil-batch-send")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(
        self, batch: list[tuple[X509SvidRequest, asyncio.Future[X509SvidResult]]]
    ) -> None:
        try:
            results = await self._send([request for request, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except BaseException as err:
            # Every submitter waits on this batch: each gets the failure (not swallowed; a bug still surfaces).
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            if not isinstance(err, SigilError):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _send(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        self.batches_sent += 1
        results = await call_issuer(self._issue(requests))
        if len(results) != len(requests):
            raise IssuerUnreachableError(
                f"the issuer answered {len(results)} items for a batch of {len(requests)}"
            )
        _log.debug("X509-SVID batch answered", size=len(requests))
        return results

    async def aclose(self) -> None:
        """Cancel the window and every batch in flight; waiting submitters see CancelledError."""
        tasks = [t for t in (self._flusher, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
