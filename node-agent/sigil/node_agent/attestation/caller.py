"""Attestation of a caller: every configured attestor, then the PID-reuse check.

Attestors read ``/proc/PID/...`` some time after the connection was accepted. If the caller exited and its pid
went to another process meanwhile, they described the wrong process; so the start time recorded at accept is
checked again *after* they ran, and a mismatch refuses the call (SPIRE: peertracker ``IsAlive``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, cast

import structlog

from sigil.node_agent.attestation.attestors import PodAttestor, WorkloadAttestor
from sigil.node_agent.attestation.peer import PROC_ROOT, PeerCredentials, ensure_peer_alive
from sigil.node_agent.attestation.selectors import Pod, Selector, WorkloadAttestation

__all__ = ["Attestation", "CallerAttestor"]

_log = structlog.get_logger(__name__)


class CallerAttestor(Protocol):
    """What the Workload API needs: the attestation of a caller from its peer credentials."""

    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        """Attest ``peer``; raises AttestationError when it cannot be identified."""
        ...


class Attestation:
    """Runs every attestor on a caller and returns the union of their selectors."""

    def __init__(
        self, attestors: Sequence[WorkloadAttestor], *, proc_root: Path = PROC_ROOT
    ) -> None:
        self._attestors = tuple(attestors)
        # Decided once: which attestors also hand over the caller's pod.
        self._finds_pod = tuple(isinstance(a, PodAttestor) for a in self._attestors)
        self._proc_root = proc_root

    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        """Attest ``peer``; raises AttestationError (or PeerGoneError when its pid changed hands)."""
        selectors: set[Selector] = set()
        pod: Pod | None = None
        for attestor, finds_pod in zip(self._attestors, self._finds_pod, strict=True):
            if finds_pod:
                found, its_pod = await cast(PodAttestor, attestor).attest_pod(peer)
                pod = pod or its_pod
            else:
                found = await attestor.attest(peer)
            selectors |= found
        ensure_peer_alive(peer, proc_root=self._proc_root)
        _log.debug(
            "workload attested",
            pid=peer.pid,
            uid=peer.uid,
            selectors=sorted(str(s) for s in selectors),
        )
        return WorkloadAttestation(peer=peer, selectors=frozenset(selectors), pod=pod)
