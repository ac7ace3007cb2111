"""The ``k8s`` attestor: which pod a caller runs in, and what Kubernetes says about that pod.

The pod UID and container ID come from the caller's cgroup (``cgroup.py``); the pod itself from a
:class:`PodIndex`, an in-memory view of this node's pods kept current by the issuer's node-pods feed (``pod_sync.py``;
this module needs only the lookup). A pod can start and call the agent before the feed has
delivered it, so an unknown UID is looked up again a few times before the call is refused, as SPIRE polls the
kubelet (``max_poll_attempts`` x ``poll_retry_interval``).

Selectors, named as SPIRE names them: ``k8s:ns``, ``k8s:sa``, ``k8s:pod-uid``, ``k8s:pod-name``,
``k8s:pod-label:KEY:VALUE``, ``k8s:container-id``, ``k8s:node-name``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sigil.node_agent.attestation.attestors.cgroup import (
    CgroupError,
    PodContainer,
    pod_container_of,
)
from sigil.node_agent.attestation.peer import PROC_ROOT, PeerCredentials
from sigil.node_agent.attestation.selectors import Pod, Selector, Selectors
from sigil.node_agent.errors import AttestationError, PeerGoneError

__all__ = ["InMemoryPodIndex", "K8sAttestor", "K8sAttestorSettings", "Pod", "PodIndex"]


class PodIndex(Protocol):
    """This node's pods by UID."""

    def get_by_uid(self, uid: str) -> Pod | None:
        """The pod with this UID, or None when the index does not (yet) know it."""
        ...


class InMemoryPodIndex:
    """A :class:`PodIndex` held in a dict: for tests, and for the pod feed to fill."""

    def __init__(self, pods: Iterable[Pod] = ()) -> None:
        self._pods = {pod.uid: pod for pod in pods}

    def put(self, pod: Pod) -> None:
        """Add or replace ``pod``."""
        self._pods[pod.uid] = pod

    def remove(self, uid: str) -> None:
        """Forget the pod with ``uid`` (no error when unknown)."""
        self._pods.pop(uid, None)

    def get_by_uid(self, uid: str) -> Pod | None:
        """The pod with ``uid``, or None."""
        return self._pods.get(uid)


@dataclass(frozen=True, slots=True, kw_only=True)
class K8sAttestorSettings:
    """``node_name`` (when set) refuses pods bound to another node; the poll settle an index that lags."""

    node_name: str | None = None
    max_poll_attempts: int = 60
    poll_interval: float = 0.5
    proc_root: Path = PROC_ROOT

    def __post_init__(self) -> None:
        if self.max_poll_attempts < 1:
            raise ValueError("max_poll_attempts must be at least 1")
        if self.poll_interval < 0:
            raise ValueError("poll_interval must not be negative")


class K8sAttestor:
    """Selectors of the pod and container a caller runs in; none for a process outside any pod."""

    name = "k8s"

    def __init__(self, pods: PodIndex, settings: K8sAttestorSettings | None = None) -> None:
        self._pods = pods
        self._settings = settings or K8sAttestorSettings()

    async def attest(self, peer: PeerCredentials) -> Selectors:
        """The k8s selectors of ``peer``; AttestationError when its pod is unknown to this node."""
        selectors, _ = await self.attest_pod(peer)
        return selectors

    async def attest_pod(self, peer: PeerCredentials) -> tuple[Selectors, Pod | None]:
        """The k8s selectors of ``peer`` and its pod (None outside any pod), as :class:`PodAttestor` asks."""
        where = self._pod_container(peer.pid)
        if where is None:
            return frozenset(), None
        pod = await self._find_pod(peer.pid, where.pod_uid)
        if self._settings.node_name is not None and pod.node_name != self._settings.node_name:
            raise AttestationError(
                peer.pid, f"pod {pod.namespace}/{pod.name} is bound to node {pod.node_name!r}"
            )
        found = {
            Selector("k8s", f"ns:{pod.namespace}"),
            Selector("k8s", f"sa:{pod.service_account}"),
            Selector("k8s", f"pod-uid:{pod.uid}"),
            Selector("k8s", f"pod-name:{pod.name}"),
            Selector("k8s", f"node-name:{pod.node_name}"),
        }
        found.update(Selector("k8s", f"pod-label:{k}:{v}") for k, v in pod.labels.items())
        if where.container_id is not None:
            found.add(Selector("k8s", f"container-id:{where.container_id}"))
        return frozenset(found), pod

    def _pod_container(self, pid: int) -> PodContainer | None:
        path = self._settings.proc_root / str(pid) / "cgroup"
        try:
            # A read of procfs is served from kernel memory and does not block.
            text = path.read_text()
        except FileNotFoundError as err:
            raise PeerGoneError(pid, "the process has exited") from err
        except OSError as err:
            raise AttestationError(pid, f"cannot read its cgroups ({err.strerror})") from err
        try:
            return pod_container_of(text)
        except CgroupError as err:
            raise AttestationError(pid, str(err)) from err

    async def _find_pod(self, pid: int, uid: str) -> Pod:
        for attempt in range(self._settings.max_poll_attempts):
            pod = self._pods.get_by_uid(uid)
            if pod is not None:
                return pod
            if attempt + 1 < self._settings.max_poll_attempts:
                await asyncio.sleep(self._settings.poll_interval)
        raise AttestationError(pid, f"pod {uid} is not among this node's pods")
