"""Workload attestation: who is calling, from the kernel, as selectors the issuer's registration entries match.

- ``peer``: the caller's credentials captured at accept (``SO_PEERCRED``) and the PID-reuse check;
- ``attestors``: one attestor per platform (``unix``, ``k8s``, and the ``cgroup`` parser the ``k8s`` one uses);
- ``caller``: :class:`Attestation`, every attestor in turn and then the PID-reuse check;
- ``selectors``: what attestation establishes, as ``type:value`` selectors;
- ``pod_sync``: this node's pods, followed from the issuer, which the ``k8s`` attestor looks callers up in.

Only the light values are exported here, so that importing them (as the Workload API's contract does) pulls in
neither aiohttp nor the issuer client; :class:`~sigil.node_agent.attestation.pod_sync.PodSync` and the attestors
are imported from their modules. Even the light values load on first use (PEP 562), so that importing one
attestation module (``peer``, say) does not load the others and the logging stack with them. Nothing here imports the Workload API endpoint or the SVID cache (import-linter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.kit.lazy import lazy_exports

if TYPE_CHECKING:
    from sigil.node_agent.attestation.attestors import PodAttestor, WorkloadAttestor
    from sigil.node_agent.attestation.caller import Attestation, CallerAttestor
    from sigil.node_agent.attestation.peer import PeerCredentials
    from sigil.node_agent.attestation.selectors import Pod, Selector, Selectors, WorkloadAttestation

__all__ = [
    "Attestation",
    "CallerAttestor",
    "PeerCredentials",
    "Pod",
    "PodAttestor",
    "Selector",
    "Selectors",
    "WorkloadAttestation",
    "WorkloadAttestor",
]

#: Where each exported name lives.
_HOMES = {
    "PodAttestor": "sigil.node_agent.attestation.attestors",
    "WorkloadAttestor": "sigil.node_agent.attestation.attestors",
    "Attestation": "sigil.node_agent.attestation.caller",
    "CallerAttestor": "sigil.node_agent.attestation.caller",
    "PeerCredentials": "sigil.node_agent.attestation.peer",
    "Pod": "sigil.node_agent.attestation.selectors",
    "Selector": "sigil.node_agent.attestation.selectors",
    "Selectors": "sigil.node_agent.attestation.selectors",
    "WorkloadAttestation": "sigil.node_agent.attestation.selectors",
}


__getattr__ = lazy_exports(__name__, _HOMES)
