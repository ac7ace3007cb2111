"""This node's pods, kept current by a list+watch on ``spec.nodeName``: the ``k8s`` attestor's index.

The ``k8s`` workload attestor needs the pod a caller runs in (``attestors/k8s.py``), and the SVID cache needs to
know when a pod is deleted, so that its SVIDs go at once rather than at the idle check. One watch gives both. It is
the standard informer loop, written against the API server's HTTP interface with aiohttp (a dependency already),
so that it is asynchronous and owned like every other task of the agent:

- list ``/api/v1/pods?fieldSelector=spec.nodeName=NODE``, replace the index, report pods that vanished meanwhile;
- watch from the list's ``resourceVersion``; ``ADDED``/``MODIFIED`` put, ``DELETED`` removes and reports;
- a stream that ends is resumed from the last version seen; ``410 Gone`` (compacted history) relists;
- a failure backs off (``rotation.Backoff``) and relists.

Credentials are the pod's own ServiceAccount (in-cluster token and CA files, read at each connection because the
token rotates); RBAC needs ``list`` and ``watch`` on pods.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from sigil.node_agent.attestors.k8s import InMemoryPodIndex, Pod
from sigil.node_agent.rotation import Backoff

__all__ = ["KubeEndpoint", "PodWatch", "in_cluster_endpoint"]

_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The server ends a watch after this long; we resume it. Shorter than typical load-balancer idle timeouts.
_WATCH_SECONDS = 290

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeEndpoint:
    """Where the API server is and how to authenticate to it."""

    url: str
    token_path: Path | None = None
    ca_path: Path | None = None

    def headers(self) -> dict[str, str]:
        """Request headers; the token file is read each time (projected tokens rotate). Blocking: tiny file."""
        if self.token_path is None:
            return {}
        return {"Authorization": f"Bearer {self.token_path.read_text().strip()}"}

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.ca_path is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_path))


def in_cluster_endpoint() -> KubeEndpoint | None:
    """The API server as a pod sees it (``KUBERNETES_SERVICE_HOST``), or None outside a cluster."""
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host or not port:
        return None
    host = f"[{host}]" if ":" in host else host
    return KubeEndpoint(
        url=f"https://{host}:{port}",
        token_path=_SERVICE_ACCOUNT / "token",
        ca_path=_SERVICE_ACCOUNT / "ca.crt",
    )


def _pod_of(item: Mapping[str, Any]) -> Pod | None:
    metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
    uid = metadata.get("uid")
    if not uid:
        return None
    return Pod(
        uid=str(uid),
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        service_account=str(spec.get("serviceAccountName") or "default"),
        node_name=str(spec.get("nodeName") or ""),
        labels=dict(metadata.get("labels") or {}),
    )


class _Gone(Exception):  # noqa: N818 -- a control-flow signal inside this module, not an error for callers
    """The watch's resourceVersion was compacted away: relist."""


class PodWatch:
    """Keeps ``index`` equal to this node's pods; ``on_delete(uid)`` for every pod that goes away."""

    def __init__(
        self,
        endpoint: KubeEndpoint,
        node_name: str,
        index: InMemoryPodIndex,
        *,
        on_delete: Callable[[str], None],
        backoff: Backoff,
    ) -> None:
        self._endpoint = endpoint
        self._node_name = node_name
        self._index = index
        self._on_delete = on_delete
        self._backoff = backoff
        self._known: set[str] = set()
        self.synced = asyncio.Event()

    def _url(self, **params: str) -> tuple[str, dict[str, str]]:
        query = {"fieldSelector": f"spec.nodeName={self._node_name}", **params}
        return f"{self._endpoint.url}/api/v1/pods", query

    async def run(self) -> None:
        """List and watch forever; the owner cancels it."""
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    version = await self._list(session)
                    self._backoff.reset()
                    while True:
                        version = await self._watch(session, version)
                except _Gone:
                    _log.info("pod watch history compacted; listing again")
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
                    delay = self._backoff.next_delay().total_seconds()
                    _log.warning(
                        "pod watch failed; retrying", error=str(err), retry_in_s=round(delay, 3)
                    )
                    await asyncio.sleep(delay)

    async def _list(self, session: aiohttp.ClientSession) -> str:
        url, query = self._url()
        headers = await asyncio.to_thread(self._endpoint.headers)
        async with session.get(
            url, params=query, headers=headers, ssl=self._endpoint.ssl_context()
        ) as reply:
            reply.raise_for_status()
            document = await reply.json()
        pods = [p for p in (_pod_of(item) for item in document.get("items", [])) if p is not None]
        current = {pod.uid for pod in pods}
        for uid in self._known - current:
            self._forget(uid)
        for pod in pods:
            self._index.put(pod)
        self._known = current
        self.synced.set()
        return str(document.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, session: aiohttp.ClientSession, version: str) -> str:
        url, query = self._url(
            watch="true", resourceVersion=version, timeoutSeconds=str(_WATCH_SECONDS)
        )
        headers = await asyncio.to_thread(self._endpoint.headers)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=_WATCH_SECONDS + 30)
        async with session.get(
            url, params=query, headers=headers, ssl=self._endpoint.ssl_context(), timeout=timeout
        ) as reply:
            reply.raise_for_status()
            async for line in reply.content:
                if line.strip():
                    version = self._apply(json.loads(line)) or version
        return version

    def _apply(self, event: Mapping[str, Any]) -> str | None:
        kind, item = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if item.get("code") == 410:
                raise _Gone
            raise ValueError(f"watch error: {item.get('message', item)}")
        pod = _pod_of(item)
        if pod is None:
            return None
        if kind == "DELETED":
            self._forget(pod.uid)
        elif kind in {"ADDED", "MODIFIED"}:
            self._index.put(pod)
            self._known.add(pod.uid)
        return str(item.get("metadata", {}).get("resourceVersion", "")) or None

    def _forget(self, uid: str) -> None:
        self._index.remove(uid)
        self._known.discard(uid)
        self._on_delete(uid)
