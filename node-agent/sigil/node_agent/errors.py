"""Errors of the node agent, under Sigil's root error.

The Workload API maps each of these to one gRPC status in a single table (``workload_api._STATUS_OF``), so the
status a workload sees is decided in one place and follows the SPIFFE Workload Endpoint standard
(https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_Endpoint.md, section 6)::

    SigilError
    └── NodeAgentError
        ├── SecurityHeaderMissingError                     -> InvalidArgument
        ├── InvalidWorkloadRequestError   (reason)         -> InvalidArgument
        ├── JwtSvidInvalidError           (reason)         -> InvalidArgument
        ├── AttestationError              (pid, reason)    -> PermissionDenied
        │   └── PeerGoneError             (pid, reason)    -> Unauthenticated
        ├── NoIdentityError                                -> PermissionDenied
        ├── NotEntitledError              (spiffe_id)      -> PermissionDenied
        ├── IdentityUnavailableError      (reason)         -> Unavailable
        ├── SocketError                   (path, reason)   (start-up only, never reaches a workload)
        ├── AgentConfigError              (source, reason) (start-up only)
        ├── IssuerUnreachableError        (reason)         the issuer did not answer; retried with backoff
        └── AgentAttestationError         (reason)         the issuer refused the agent itself (attest, renew, SVID)

The last three never reach a workload as such: the SVID cache turns an unreachable issuer into
``IdentityUnavailableError`` when it has nothing valid to serve, and keeps serving what it has otherwise.
"""

from __future__ import annotations

from sigil.ca.errors import SigilError

__all__ = [
    "AgentAttestationError",
    "AgentConfigError",
    "AttestationError",
    "IdentityUnavailableError",
    "InvalidWorkloadRequestError",
    "IssuerUnreachableError",
    "JwtSvidInvalidError",
    "NoIdentityError",
    "NodeAgentError",
    "NotEntitledError",
    "PeerGoneError",
    "SecurityHeaderMissingError",
    "SocketError",
]


class NodeAgentError(SigilError):
    """Something the node agent refused or could not do."""


class SecurityHeaderMissingError(NodeAgentError):
    """A Workload API call without the ``workload.spiffe.io: true`` metadata; clients must not retry it."""

    def __init__(self) -> None:
        # SPIRE's exact wording, so operators searching logs find the same text for both.
        super().__init__("security header missing from request")


class InvalidWorkloadRequestError(NodeAgentError):
    """A request that lacks a mandatory field or carries a malformed one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JwtSvidInvalidError(NodeAgentError):
    """A JWT-SVID given to ValidateJWTSVID that does not validate; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid JWT-SVID: {reason}")
        self.reason = reason


class AttestationError(NodeAgentError):
    """The calling process could not be attested; ``reason`` says why (it is logged, and sent to the caller)."""

    def __init__(self, pid: int, reason: str) -> None:
        super().__init__(f"workload attestation failed for pid {pid}: {reason}")
        self.pid = pid
        self.reason = reason


class PeerGoneError(AttestationError):
    """The caller exited, or its PID now names another process, between accept and the end of attestation."""


class NoIdentityError(NodeAgentError):
    """The caller was attested but is entitled to no identity."""

    def __init__(self) -> None:
        super().__init__("no identity issued")


class NotEntitledError(NodeAgentError):
    """The caller asked for a JWT-SVID of a SPIFFE ID it does not hold."""

    def __init__(self, spiffe_id: str) -> None:
        super().__init__(f"caller is not entitled to {spiffe_id}")
        self.spiffe_id = spiffe_id


class IdentityUnavailableError(NodeAgentError):
    """The agent cannot answer yet (still bootstrapping, issuer unreachable with nothing cached)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SocketError(NodeAgentError):
    """The Workload API socket could not be created at ``path``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"workload API socket {path}: {reason}")
        self.path = path
        self.reason = reason


class AgentConfigError(NodeAgentError):
    """A setting of the agent that cannot be used; ``source`` names the file, variable or flag."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class IssuerUnreachableError(NodeAgentError):
    """The issuer did not answer (connection refused, timeout, 5xx, rate limited); the agent retries later."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"issuer unreachable: {reason}")
        self.reason = reason


class AgentAttestationError(NodeAgentError):
    """The issuer refused to attest or renew the agent itself (a spent join token, an unknown node, a ban)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"agent attestation failed: {reason}")
        self.reason = reason
