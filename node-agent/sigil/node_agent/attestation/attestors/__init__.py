"""Workload attestors: each turns a caller's peer credentials into selectors.

An attestor returns the selectors it could establish, an empty set when its platform does not apply (a process
outside any pod has no ``k8s`` selectors), and raises ``AttestationError`` when the caller belongs to its
platform but cannot be identified (a pod this node does not know).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Pod, Selectors

__all__ = ["PodAttestor", "WorkloadAttestor"]


class WorkloadAttestor(Protocol):
    """Something that can tell selectors about a calling process."""

    @property
    def name(self) -> str:
        """The selector type it produces (``unix``, ``k8s``), for logs."""
        ...

    async def attest(self, peer: PeerCredentials) -> Selectors:
        """The selectors of ``peer``; raises AttestationError when it cannot be identified."""
        ...


@runtime_checkable
class PodAttestor(WorkloadAttestor, Protocol):
    """An attestor that also finds the pod a caller runs in (the ``k8s`` one)."""

    async def attest_pod(self, peer: PeerCredentials) -> tuple[Selectors, Pod | None]:
        """The selectors of ``peer`` and its pod, None when it runs outside any pod."""
        ...
