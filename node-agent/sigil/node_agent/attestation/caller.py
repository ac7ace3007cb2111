"""Attestation of a caller: every configured attestor, then the PID-reuse check.

Attestors read ``/proc/PID/...`` some time after the connection was accepted. If the caller exited and its pid
went to another process meanwhile, they described the wrong process; so the start time recorded at accept is
checked again *after* they ran, and a mismatch refuses the call (SPIRE: peertracker ``IsAlive``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import structlog

from sigil.node_agent.attestation.attestors import WorkloadAttestor
from sigil.node_agent.attestation.peer import PROC_ROOT, PeerCredentials, ensure_peer_alive
from sigil.node_agent.attestation.selectors import Selector, WorkloadAttestation

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
        self._proc_root = proc_root

    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        """Attest ``peer``; raises AttestationError (or PeerGoneError when its pid changed hands)."""
        selectors: set[Selector] = set()
        for attestor in self._attestors:
            selectors |= await attestor.attest(peer)
        ensure_peer_alive(peer, proc_root=self._proc_root)
        _log.debug(
            "workload attested",
            pid=peer.pid,
            uid=peer.uid,
            selectors=sorted(str(s) for s in selectors),
        )
        return WorkloadAttestation(peer=peer, selectors=frozenset(selectors))
