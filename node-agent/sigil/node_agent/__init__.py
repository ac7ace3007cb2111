"""The Sigil node agent: the SPIFFE Workload API on a Unix socket, workload attestation, SVID cache and rotation.

This top level exports only light value types and interfaces; the gRPC server lives in
``sigil.node_agent.server`` and the attestors in ``sigil.node_agent.attestors.*`` so that importing the package
does not pull in grpclib and protobuf.
"""

from __future__ import annotations

from sigil.node_agent.errors import (
    AttestationError,
    IdentityUnavailableError,
    InvalidWorkloadRequestError,
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
    "AttestationError",
    "ChangeFeed",
    "IdentitySource",
    "IdentityUnavailableError",
    "InvalidWorkloadRequestError",
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
