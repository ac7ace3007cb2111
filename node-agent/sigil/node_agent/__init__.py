"""The Sigil node agent: the SPIFFE Workload API on a Unix socket, workload attestation, SVID cache and rotation.

This top level exports only light value types and interfaces; the gRPC server lives in
``sigil.node_agent.server``, the attestors in ``sigil.node_agent.attestors.*``, the SVID cache in
``sigil.node_agent.manager`` and the assembled agent in ``sigil.node_agent.runtime``, so that importing the package
does not pull in grpclib, protobuf or aiohttp.
"""

from __future__ import annotations

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
from sigil.node_agent.identity import (
    ChangeFeed,
    IdentitySource,
    TrustBundles,
    WorkloadJwtSvid,
    WorkloadX509Svid,
)
from sigil.node_agent.peer import PeerCredentials
from sigil.node_agent.selectors import Selector, Selectors, WorkloadAttestation

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
