"""A list+watch of one collection, kept as a dict of objects, for resources other than pods.

The policy CRDs and namespaces change rarely but must reach agents at once, so they are followed the way
client-go's reflector follows anything: list, then watch from the list's ``resourceVersion``, resume after a
watch ends, list again on ``410 Gone``, back off while the API server is unreachable (keeping what was seen: a
vanished API server must not read as "every policy was deleted"). After every list and every event the owner's
``on_change`` gets the whole current set; it is cheap for these small collections and keeps the owner simple.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.api import KubeApi

__all__ = ["Informer", "ObjectKey"]

log = structlog.get_logger(__name__)

ObjectKey = tuple[str, str]
"""(namespace or "", name)."""

OnChange = Callable[[Mapping[ObjectKey, dict[str, Any]]], Awaitable[None]]


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace", "")), str(metadata.get("name", "")))


class Informer:
    """Follows the collection at ``path``; :meth:`run` is a background task its owner cancels."""

    def __init__(
        self,
        api: KubeApi,
        path: str,
        on_change: OnChange,
        *,
        watch_timeout: int = 300,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
    ) -> None:
        self._api = api
        self.path = path
        self._on_change = on_change
        self._watch_timeout = watch_timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._resource_version: str | None = None
        self.synced = asyncio.Event()

    async def run(self) -> None:
        delay = self._retry_delay
        while True:
            try:
                version = self._resource_version
                if version is None:
                    version = await self._relist()
                await self._watch(version)
                delay = self._retry_delay
            except KubernetesUnavailableError as err:
                log.warning(
                    "informer.unavailable", path=self.path, detail=err.detail, retry_in=delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)

    async def _relist(self) -> str:
        listing = await self._api.list_collection(self.path)
        self._objects = {_key(item): item for item in listing.get("items") or []}
        self._resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        await self._on_change(dict(self._objects))
        self.synced.set()
        return self._resource_version

    async def _watch(self, version: str) -> None:
        events = self._api.watch_collection(self.path, version, timeout_seconds=self._watch_timeout)
        async for event in events:
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:  # compacted away: only a fresh list is consistent
                    self._resource_version = None
                    return
                raise KubernetesUnavailableError(
                    f"watch {self.path}", f"error event {obj.get('code')}: {obj.get('message', '')}"
                )
            seen = (obj.get("metadata") or {}).get("resourceVersion")
            if seen:
                self._resource_version = str(seen)
            if kind in ("ADDED", "MODIFIED"):
                self._objects[_key(obj)] = obj
            elif kind == "DELETED":
                self._objects.pop(_key(obj), None)
            else:
                continue  # BOOKMARK: only the resourceVersion moves
            await self._on_change(dict(self._objects))
