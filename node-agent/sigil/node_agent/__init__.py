"""The Sigil node agent: the SPIFFE Workload API on a Unix socket, workload attestation, SVID cache and rotation.

The agent is grouped by what each part holds; the data of an SVID flows from the bottom of this list to the top:

- ``upstream``: the link to the issuer (its calls and how a failure is sorted, the agent's own SVID, the bundle feed);
- ``attestation``: who is calling (peer credentials, attestors, selectors, this node's pods);
- ``svid_cache``: the SVIDs held per workload, their issuance, rotation and expiry, and the JWT-SVID cache;
- ``identity_source``: the contract between the SVID cache and the endpoint (``memory_source`` is the test one);
- ``workload_api``: the endpoint on the Unix socket and the five RPCs of the standard (``grpc_edge`` is the frame
  it shares with the policy service);
- ``agent``: :class:`~sigil.node_agent.agent.NodeAgent`, everything assembled; ``settings`` and ``cli`` on top.

This top level exports only light value types and interfaces, so that importing the package does not pull in
grpclib, protobuf or aiohttp.
"""

from __future__ import annotations

from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, Selectors, WorkloadAttestation
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
