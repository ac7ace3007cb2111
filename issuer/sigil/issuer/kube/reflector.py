"""The one list+watch loop of the issuer: client-go's reflector, followed by the pod cache and every informer.

client-go (``tools/cache/reflector.go``) follows a collection by listing it, watching from the list's
``resourceVersion``, resuming from the last version seen when a watch ends (``timeoutSeconds``), and listing again
when that version has been compacted away (``410 Gone``,
https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes). While the API server
cannot be reached it backs off and keeps what it has: a vanished API server must not read as "everything was
deleted". The pod cache and the namespace and policy-CRD informers each wrote that loop out; this is it once, and
the owners keep only what they do with a listing and an event.

BOOKMARK events move the resource version and reach nobody else. The resource version is updated before the
owner hears of the list, the event or the expiry, so an owner that wakes waiters sees a consistent state.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import structlog

from sigil.issuer.errors import KubernetesUnavailableError
from sigil.kit import Backoff

__all__ = ["Reflector"]

_log = structlog.get_logger(__name__)

_GONE = 410

ListCall = Callable[[], Awaitable[Mapping[str, Any]]]
WatchCall = Callable[[str], AsyncIterator[Mapping[str, Any]]]


class Reflector:
    """Follows one collection for its owner; :meth:`run` is the owner's background task.

    ``on_list`` gets every item of each (re)list, ``on_event`` each ``ADDED``/``MODIFIED``/``DELETED`` event with
    its object, and ``on_expired`` is told when the version expired and a relist is due.
    """

    def __init__(
        self,
        *,
        operation: str,
        list_: ListCall,
        watch: WatchCall,
        on_list: Callable[[list[dict[str, Any]]], Awaitable[None]],
        on_event: Callable[[str, dict[str, Any]], Awaitable[None]],
        on_expired: Callable[[str], Awaitable[None]] | None = None,
        backoff: Backoff,
        unavailable_event: str,
        **log_fields: Any,
    ) -> None:
        self._operation = operation
        self._list = list_
        self._watch = watch
        self._on_list = on_list
        self._on_event = on_event
        self._on_expired = on_expired
        self._backoff = backoff
        self._unavailable_event = unavailable_event
        self._log_fields = log_fields
        self.resource_version: str | None = None
        """The version to watch from; None until the first list succeeds and again once a relist is due."""

    async def run(self) -> None:
        """List and watch forever, backing off while the API server is unavailable."""
        while True:
            try:
                await self._follow()
            except KubernetesUnavailableError as err:
                delay = self._backoff.next_delay()
                _log.warning(
                    self._unavailable_event,
                    detail=err.detail,
                    retry_in=round(delay, 3),
                    **self._log_fields,
                )
                await self._backoff.sleep(delay)
            else:
                self._backoff.reset()  # a watch that ended cleanly: the next failure waits little again

    async def _follow(self) -> None:
        version = self.resource_version
        if version is None:
            version = await self._relist()
        await self._watch_from(version)

    async def _relist(self) -> str:
        listing = await self._list()
        items = [dict(item) for item in listing.get("items") or []]
        version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        self.resource_version = version
        await self._on_list(items)
        return version

    async def _watch_from(self, version: str) -> None:
        events = self._watch(version)
        try:
            await self._apply(events)
        finally:
            # Close the stream now, whether it ended, failed or was cancelled: left to the garbage collector, its
            # HTTP connection outlives the watch (and the event loop, in tests) as an unclosed transport.
            if isinstance(events, AsyncGenerator):
                await events.aclose()

    async def _apply(self, events: AsyncIterator[Mapping[str, Any]]) -> None:
        async for event in events:
            kind, obj = event.get("type"), dict(event.get("object") or {})
            if kind == "ERROR":
                code = obj.get("code")
                if code == _GONE:  # our version was compacted away: only a fresh list is consistent
                    self.resource_version = None
                    if self._on_expired is not None:
                        await self._on_expired(str(obj.get("message", "")))
                    return
                raise KubernetesUnavailableError(
                    self._operation, f"error event {code}: {obj.get('message', '')}"
                )
            seen = (obj.get("metadata") or {}).get("resourceVersion")
            if seen:  # BOOKMARK events carry only this
                self.resource_version = str(seen)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                await self._on_event(str(kind), obj)
