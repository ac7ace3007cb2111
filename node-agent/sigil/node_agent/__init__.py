"""The Sigil node agent: the SPIFFE Workload API on a Unix socket, workload attestation, SVID cache and rotation.

The agent is grouped by what each part holds; the data of an SVID flows from the bottom of this list to the top:

- ``upstream``: the link to the issuer (its calls and how a failure is sorted, the agent's own SVID, the bundle feed);
- ``attestation``: who is calling (peer credentials, attestors, selectors, this node's pods);
- ``svid_cache``: the SVIDs held per workload, their issuance, rotation and expiry, and the JWT-SVID cache;
- ``identity_source``: the contract between the SVID cache and the endpoint (``memory_source`` is the test one);
- ``workload_api``: the endpoint on the Unix socket and the five RPCs of the standard (``grpc_edge`` is the frame
  it shares with the policy service);
- ``agent``: :class:`~sigil.node_agent.agent.NodeAgent`, everything assembled; ``settings`` and ``cli`` on top.

This top level exports only light value types and interfaces, and loads each on first use (PEP 562): every module
of the agent imports this package first, and ``sigil-agent healthcheck``, a probe started every few seconds on
every node, should not pay for the certificate library or the logging stack it never touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.kit.lazy import lazy_exports

if TYPE_CHECKING:
    from sigil.node_agent.attestation.peer import (
        PeerCredentials,
    )
    from sigil.node_agent.attestation.selectors import (
        Selector,
        Selectors,
        WorkloadAttestation,
    )
    from sigil.node_agent.errors import (
        AgentAttestationError,
        AgentConfigError,
        AttestationError,
        IdentityUnavailableError,
        InvalidWorkloadRequestError,
        IssuerUnreachableError,
        JwtSvidInvalidError,
        NodeAgentError,
        NoIdentityError,
        NotEntitledError,
        PeerGoneError,
        SecurityHeaderMissingError,
        SocketError,
    )
    from sigil.node_agent.identity_source import (
        ChangeFeed,
        IdentitySource,
        TrustBundles,
        WorkloadJwtSvid,
        WorkloadX509Svid,
    )

__all__ = [
    "AgentAttestationError",
    "AgentConfigError",
    "AttestationError",
    "ChangeFeed",
    "IdentitySource",
    "IdentityUnavailableError",
    "InvalidWorkloadRequestError",
    "IssuerUnreachableError",
    "JwtSvidInvalidError",
    "NoIdentityError",
    "NodeAgentError",
    "NotEntitledError",
    "PeerCredentials",
    "PeerGoneError",
    "SecurityHeaderMissingError",
    "Selector",
    "Selectors",
    "SocketError",
    "TrustBundles",
    "WorkloadAttestation",
    "WorkloadJwtSvid",
    "WorkloadX509Svid",
]

#: Where each exported name lives.
_HOMES = {
    "PeerCredentials": "sigil.node_agent.attestation.peer",
    "Selector": "sigil.node_agent.attestation.selectors",
    "Selectors": "sigil.node_agent.attestation.selectors",
    "WorkloadAttestation": "sigil.node_agent.attestation.selectors",
    "AgentAttestationError": "sigil.node_agent.errors",
    "AgentConfigError": "sigil.node_agent.errors",
    "AttestationError": "sigil.node_agent.errors",
    "IdentityUnavailableError": "sigil.node_agent.errors",
    "InvalidWorkloadRequestError": "sigil.node_agent.errors",
    "IssuerUnreachableError": "sigil.node_agent.errors",
    "JwtSvidInvalidError": "sigil.node_agent.errors",
    "NodeAgentError": "sigil.node_agent.errors",
    "NoIdentityError": "sigil.node_agent.errors",
    "NotEntitledError": "sigil.node_agent.errors",
    "PeerGoneError": "sigil.node_agent.errors",
    "SecurityHeaderMissingError": "sigil.node_agent.errors",
    "SocketError": "sigil.node_agent.errors",
    "ChangeFeed": "sigil.node_agent.identity_source",
    "IdentitySource": "sigil.node_agent.identity_source",
    "TrustBundles": "sigil.node_agent.identity_source",
    "WorkloadJwtSvid": "sigil.node_agent.identity_source",
    "WorkloadX509Svid": "sigil.node_agent.identity_source",
}


__getattr__ = lazy_exports(__name__, _HOMES)
