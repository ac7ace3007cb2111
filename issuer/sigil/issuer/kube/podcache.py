"""Which pods run on which node, kept current by a list+watch, so node authorization costs no API request.

An agent asks for SVIDs for the pods it attested, in batches, all the time; a GET per pod would put the issuer's load
on the API server. The cache follows client-go's reflector: list once, then watch from the list's resourceVersion;
when a watch ends (``timeoutSeconds``) resume from the last version seen; when the version is too old (``410
Gone``, https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes) list again.
While a relist is needed and has not succeeded, the cache reports itself unsynced and authorization fails closed.
While the API server is merely unreachable the cache keeps answering from what it last saw: a pod never changes
node and a UID is never reused, so the only stale answer possible is about a pod deleted in the meantime.

One task owns the loop; :meth:`PodCache.stop` (or leaving ``async with``) cancels and awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import structlog

from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.payloads import Pod

__all__ = ["CachedPod", "PodCache"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CachedPod:
    """The facts about a pod that authorization needs."""

    namespace: str
    name: str
    uid: str
    node_name: str
    service_account: str
    phase: str
    #: The pod's labels, sorted (a tuple, so that the pod stays hashable): agents make selectors of them.
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, raw: Pod) -> CachedPod:
        meta, spec = raw.get("metadata", {}), raw.get("spec", {})
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node_name=spec.get("nodeName", ""),
            service_account=spec.get("serviceAccountName", "default"),
            phase=raw.get("status", {}).get("phase", ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        )


class PodCache:
    """Every pod in the cluster (or those the selectors pick), indexed by name, UID and node."""

    def __init__(
        self,
        api: KubeApi,
        *,
        field_selector: str = "",
        label_selector: str = "",
        watch_timeout: int = 300,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
    ) -> None:
        self._api = api
        self._selectors = {"field_selector": field_selector, "label_selector": label_selector}
        self._watch_timeout = watch_timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._by_key: dict[tuple[str, str], CachedPod] = {}
        self._by_uid: dict[str, CachedPod] = {}
        self._by_node: dict[str, dict[tuple[str, str], CachedPod]] = {}
        self._resource_version: str | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.relists = 0

    # ------------------------------------------------------------------------- queries
    @property
    def synced(self) -> bool:
        """True once a list has succeeded and no relist is pending."""
        return self._resource_version is not None

    def pod(self, namespace: str, name: str) -> CachedPod | None:
        return self._by_key.get((namespace, name))

    def pod_by_uid(self, uid: str) -> CachedPod | None:
        return self._by_uid.get(uid)

    def pods_on_node(self, node_name: str) -> tuple[CachedPod, ...]:
        return tuple(self._by_node.get(node_name, {}).values())

    async def wait_for(self, predicate: Callable[[PodCache], bool]) -> None:
        """Wait until ``predicate(self)`` holds, checking after every change; bound it with ``asyncio.timeout``."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the pod cache is already running")
        self._task = asyncio.create_task(self._run(), name="sigil-pod-cache")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> PodCache:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------------- the loop
    async def _run(self) -> None:
        delay = self._retry_delay
        while True:
            try:
                version = self._resource_version
                if version is None:
                    version = await self._relist()
                await self._watch(version)
                delay = self._retry_delay
            except KubernetesUnavailableError as err:
                log.warning("pod_cache.unavailable", detail=err.detail, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)

    async def _relist(self) -> str:
        listing = await self._api.list_pods(**self._selectors)
        pods = [CachedPod.parse(raw) for raw in listing.get("items", [])]
        async with self._changed:
            self._by_key.clear()
            self._by_uid.clear()
            self._by_node.clear()
            for pod in pods:
                self._store(pod)
            self._resource_version = listing.get("metadata", {}).get("resourceVersion", "")
            self.relists += 1
            self._changed.notify_all()
        log.info("pod_cache.listed", pods=len(pods), resource_version=self._resource_version)
        return self._resource_version

    async def _watch(self, version: str) -> None:
        events = self._api.watch_pods(
            version, timeout_seconds=self._watch_timeout, **self._selectors
        )
        async for event in events:
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                code = obj.get("code")
                if (
                    code == 410
                ):  # our resourceVersion was compacted away: only a fresh list is consistent
                    log.info("pod_cache.expired", detail=obj.get("message", ""))
                    async with self._changed:
                        self._resource_version = None
                        self._changed.notify_all()
                    return
                raise KubernetesUnavailableError(
                    "watch pods", f"error event {code}: {obj.get('message', '')}"
                )
            raw = cast(Pod, obj)
            async with self._changed:
                if kind in ("ADDED", "MODIFIED"):
                    self._store(CachedPod.parse(raw))
                elif kind == "DELETED":
                    self._drop(CachedPod.parse(raw))
                seen = raw.get("metadata", {}).get("resourceVersion")
                if seen:  # BOOKMARK events carry only this
                    self._resource_version = seen
                self._changed.notify_all()

    def _store(self, pod: CachedPod) -> None:
        key = (pod.namespace, pod.name)
        old = self._by_key.get(key)
        if old is not None:
            self._drop(old)
        self._by_key[key] = pod
        self._by_uid[pod.uid] = pod
        if pod.node_name:
            self._by_node.setdefault(pod.node_name, {})[key] = pod

    def _drop(self, pod: CachedPod) -> None:
        key = (pod.namespace, pod.name)
        old = self._by_key.pop(key, None)
        if old is None:
            return
        self._by_uid.pop(old.uid, None)
        on_node = self._by_node.get(old.node_name)
        if on_node is not None:
            on_node.pop(key, None)
            if not on_node:
                del self._by_node[old.node_name]
