"""Which pods run on which node, kept current by a list+watch, so node authorization costs no API request.

An agent asks for SVIDs for the pods it attested, in batches, all the time; a GET per pod would put the issuer's load
on the API server. The cache is fed by the issuer's one :class:`~sigil.issuer.kube.reflector.Reflector` (list,
watch, resume, relist on ``410 Gone``). While a relist is needed and has not succeeded, the cache reports itself
unsynced and authorization fails closed. While the API server is merely unreachable the cache keeps answering from what it last saw: a pod never changes
node and a UID is never reused, so the only stale answer possible is about a pod deleted in the meantime.

One owned task runs the reflector; :meth:`PodCache.aclose` (or leaving ``async with``) cancels and awaits it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog

from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.payloads import Pod
from sigil.issuer.kube.reflector import Reflector
from sigil.kit import Backoff, Revisioned, Service, TaskOwner

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
    #: The containers' named ports, (name, number), sorted: Linkerd's ``Server`` may name a port.
    named_ports: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, raw: Pod) -> CachedPod:
        meta, spec = raw.get("metadata", {}), raw.get("spec", {})
        named: set[tuple[str, int]] = set()
        for container in spec.get("containers") or ():
            for port in container.get("ports") or ():
                name, number = port.get("name"), port.get("containerPort")
                if isinstance(name, str) and type(number) is int:
                    named.add((name, number))
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node_name=spec.get("nodeName", ""),
            service_account=spec.get("serviceAccountName", "default"),
            phase=raw.get("status", {}).get("phase", ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
            named_ports=tuple(sorted(named)),
        )


class PodCache(Service):
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
        selectors = {"field_selector": field_selector, "label_selector": label_selector}
        self._by_key: dict[tuple[str, str], CachedPod] = {}
        self._by_uid: dict[str, CachedPod] = {}
        self._by_node: dict[str, dict[tuple[str, str], CachedPod]] = {}
        self._by_namespace: dict[str, dict[tuple[str, str], CachedPod]] = {}
        #: Counts changes; what a waiter waits for is its own predicate over the cache, checked at each change.
        self._changes: Revisioned[None] = Revisioned(None, "0")
        self._change_count = 0
        self._tasks = TaskOwner("pod cache")
        self._reflector = Reflector(
            operation="watch pods",
            list_=lambda: api.list_pods(**selectors),
            watch=lambda version: api.watch_pods(
                version, timeout_seconds=watch_timeout, **selectors
            ),
            on_list=self._listed,
            on_event=self._event,
            on_expired=self._expired,
            backoff=Backoff(first=retry_delay, longest=max_retry_delay),
            unavailable_event="pod_cache.unavailable",
        )
        self.relists = 0

    # ------------------------------------------------------------------------- queries
    @property
    def synced(self) -> bool:
        """True once a list has succeeded and no relist is pending."""
        return self._reflector.resource_version is not None

    def pod(self, namespace: str, name: str) -> CachedPod | None:
        return self._by_key.get((namespace, name))

    def pod_by_uid(self, uid: str) -> CachedPod | None:
        return self._by_uid.get(uid)

    def pods_on_node(self, node_name: str) -> tuple[CachedPod, ...]:
        return tuple(self._by_node.get(node_name, {}).values())

    def pods_in_namespace(self, namespace: str) -> tuple[CachedPod, ...]:
        return tuple(self._by_namespace.get(namespace, {}).values())

    @property
    def change_count(self) -> int:
        """How many changes the cache has seen (lists, events, expiries): a waiter's mark."""
        return self._change_count

    async def wait_for(
        self, predicate: Callable[[PodCache], bool], *, longest: float | None = None
    ) -> bool:
        """Wait until ``predicate(self)`` holds (checked now, after every change and at each :meth:`wake`) or
        ``longest`` seconds pass; return whether the predicate holds."""
        await self._changes.wait_past(None, longest=longest, also=lambda: predicate(self))
        return predicate(self)

    async def wake(self) -> None:
        """Have every waiter check its predicate again (something outside the cache changed, such as a drain)."""
        await self._changes.wake()

    async def _changed(self) -> None:
        self._change_count += 1
        await self._changes.publish(None, str(self._change_count))

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._tasks.running:
            raise RuntimeError("the pod cache is already running")
        self._tasks.spawn(self._reflector.run(), name="sigil-pod-cache")

    async def aclose(self) -> None:
        await self._tasks.aclose()
        self._tasks = TaskOwner("pod cache")

    # ------------------------------------------------------------------------- what the reflector hands over
    async def _listed(self, items: list[dict[str, Any]]) -> None:
        pods = [CachedPod.parse(cast(Pod, raw)) for raw in items]
        self._by_key.clear()
        self._by_uid.clear()
        self._by_node.clear()
        self._by_namespace.clear()
        for pod in pods:
            self._store(pod)
        self.relists += 1
        await self._changed()
        log.info(
            "pod_cache.listed", pods=len(pods), resource_version=self._reflector.resource_version
        )

    async def _event(self, kind: str, obj: dict[str, Any]) -> None:
        pod = CachedPod.parse(cast(Pod, obj))
        if kind == "DELETED":
            self._drop(pod)
        else:
            self._store(pod)
        await self._changed()

    async def _expired(self, detail: str) -> None:
        log.info("pod_cache.expired", detail=detail)
        await self._changed()

    def _store(self, pod: CachedPod) -> None:
        key = (pod.namespace, pod.name)
        old = self._by_key.get(key)
        if old is not None:
            self._drop(old)
        self._by_key[key] = pod
        self._by_uid[pod.uid] = pod
        if pod.node_name:
            self._by_node.setdefault(pod.node_name, {})[key] = pod
        self._by_namespace.setdefault(pod.namespace, {})[key] = pod

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
        in_namespace = self._by_namespace.get(old.namespace)
        if in_namespace is not None:
            in_namespace.pop(key, None)
            if not in_namespace:
                del self._by_namespace[old.namespace]
