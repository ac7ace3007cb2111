"""A list+watch of one collection, kept as a dict of objects, for resources other than pods.

The policy CRDs and namespaces change rarely but must reach agents at once, so they are followed by the issuer's
one :class:`~sigil.issuer.kube.reflector.Reflector`, which keeps what was seen while the API server is unreachable
(a vanished API server must not read as "every policy was deleted"). After every list and every event the owner's
``on_change`` gets the whole current set; it is cheap for these small collections and keeps the owner simple.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.reflector import Reflector
from sigil.kit import Backoff

__all__ = ["Informer", "ObjectKey", "OnChange"]

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
        self.path = path
        self._on_change = on_change
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self._reflector = Reflector(
            operation=f"watch {path}",
            list_=lambda: api.list_collection(path),
            watch=lambda version: api.watch_collection(
                path, version, timeout_seconds=watch_timeout
            ),
            on_list=self._listed,
            on_event=self._event,
            backoff=Backoff(first=retry_delay, longest=max_retry_delay),
            unavailable_event="informer.unavailable",
            path=path,
        )

    async def run(self) -> None:
        await self._reflector.run()

    async def _listed(self, items: list[dict[str, Any]]) -> None:
        self._objects = {_key(item): item for item in items}
        await self._on_change(dict(self._objects))
        self.synced.set()

    async def _event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._objects.pop(_key(obj), None)
        else:
            self._objects[_key(obj)] = obj
        await self._on_change(dict(self._objects))
