"""This node's pods, kept current by the issuer's node-pods long poll: the ``k8s`` attestor's index.

The ``k8s`` workload attestor needs the pod a caller runs in (``attestors/k8s.py``), and the SVID cache needs to
know when a pod is deleted, so that its SVIDs go at once rather than at the idle check. The agent does not ask the
API server for them: it would need ``list``/``watch`` on every pod of the cluster (RBAC cannot scope a list to one
node), so a compromised node would read every pod's labels and placement. The issuer, which watches all pods for
node authorization anyway, serves each agent the pods of the node in its SVID (``GET /v1/agent/pods``), as Istio's
control plane pushes each ztunnel only its node's workloads.

It is followed like the bundle and policy feeds (``upstream/bundle_sync.py``, ``policies/mirror.py``): one request waits on the
issuer until the node's pods change or ``rotation.bundle_wait`` passes; each answer is the node's whole set, which
replaces the index, and every UID that left it is reported deleted. While the issuer is away the index keeps what
it had and the poll backs off; an issuer that refuses (an agent without a Kubernetes node) is retried the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import structlog

from sigil.issuer.client import NodePod, NodePodsUpdate
from sigil.node_agent.attestation.attestors.k8s import InMemoryPodIndex, Pod, PodIndex
from sigil.node_agent.identity_source import ChangeFeed
from sigil.node_agent.rotation import Backoff, poll_forever
from sigil.node_agent.upstream.issuer_link import call_issuer

__all__ = ["NodePodsApi", "PodSync"]

_log = structlog.get_logger(__name__)


class NodePodsApi(Protocol):
    """The one issuer call this needs; :class:`~sigil.issuer.client.IssuerClient` provides it."""

    async def node_pods(
        self, after_revision: str | None = None, *, wait: float | None = None
    ) -> NodePodsUpdate: ...


def _pod_of(pod: NodePod, node_name: str) -> Pod:
    return Pod(
        uid=pod.uid,
        namespace=pod.namespace,
        name=pod.name,
        service_account=pod.service_account,
        node_name=node_name,
        labels=pod.labels,
    )


class PodSync:
    """Keeps ``index`` equal to this node's pods as the issuer sees them; ``on_delete(uid)`` for each one gone."""

    def __init__(
        self,
        issuer: NodePodsApi,
        index: InMemoryPodIndex,
        *,
        on_delete: Callable[[str], None],
        wait: float,
        backoff: Backoff,
    ) -> None:
        self._issuer = issuer
        self._index = index
        self._on_delete = on_delete
        self._wait = wait
        self._backoff = backoff
        self._revision: str | None = None
        self._known: set[str] = set()
        #: Set once the first answer has filled the index.
        self.synced = asyncio.Event()
        #: Notified after every answer that changed the index.
        self.changes = ChangeFeed()

    @property
    def index(self) -> PodIndex:
        """The node's pods by UID, as the ``k8s`` attestor reads them."""
        return self._index

    @property
    def revision(self) -> str | None:
        """The issuer's revision of the pods in the index, or None before the first answer."""
        return self._revision

    async def refresh(self, *, wait: float | None = None) -> bool:
        """One request (a long poll with ``wait``); True when the pods changed. Raises IssuerUnreachableError."""
        update = await call_issuer(self._issuer.node_pods(self._revision, wait=wait))
        if update.revision == self._revision:
            return False
        self.apply(update)
        return True

    def apply(self, update: NodePodsUpdate) -> None:
        """Make the index hold exactly ``update``'s pods; report the UIDs that left it."""
        pods = {pod.uid: _pod_of(pod, update.node_name) for pod in update.pods}
        for uid in sorted(self._known - pods.keys()):
            self._index.remove(uid)
            self._on_delete(uid)
        for pod in pods.values():
            self._index.put(pod)
        self._known = set(pods)
        self._revision = update.revision
        self.synced.set()
        self.changes.notify()
        _log.info("node pods updated", node=update.node_name, pods=len(pods))

    async def run(self) -> None:
        """Long-poll forever; the owner cancels it on shutdown."""
        await poll_forever(lambda: self.refresh(wait=self._wait), self._backoff, what="pod")
