"""Refusals of a credential that does not prove who the caller is (HTTP 401).

Tokens judged by TokenReview and the pod they are bound to (the ``bound_*`` errors), and agent SVIDs checked afresh
on every request. Messages never contain a token.
"""

from __future__ import annotations

from sigil.issuer.errors.reasons import IssuerError

__all__ = [
    "AgentNodeGoneError",
    "AgentNotAttestedError",
    "AgentSvidInvalidError",
    "AgentSvidSupersededError",
    "AudienceMismatchError",
    "AuthenticationError",
    "BoundPodNotFoundError",
    "BoundPodUidMismatchError",
    "ClientCertificateRequiredError",
    "JoinTokenInvalidError",
    "NodeNotFoundError",
    "TokenMissingError",
    "TokenNotAuthenticatedError",
    "TokenNotBoundToPodError",
]


class AuthenticationError(IssuerError):
    """The presented credential does not prove who the caller is (HTTP 401)."""


class TokenMissingError(AuthenticationError):
    """No bearer token came with the request."""

    reason = "token_missing"

    def __init__(self) -> None:
        super().__init__("a bearer token is required")


class TokenNotAuthenticatedError(AuthenticationError):
    """The Kubernetes API did not authenticate the token; ``detail`` carries its error text when it gave one."""

    reason = "token_not_authenticated"

    def __init__(self, api_error: str) -> None:
        super().__init__(f"the token was not authenticated: {api_error or 'no reason given'}")
        self.api_error = api_error


class TokenNotBoundToPodError(AuthenticationError):
    """The token authenticates, but not as a pod's ServiceAccount (a legacy secret token, a user, ...)."""

    reason = "token_not_bound_to_pod"

    def __init__(self, username: str, why: str) -> None:
        super().__init__(
            f"the token of {username!r} is not a pod-bound service account token: {why}"
        )
        self.username = username
        self.why = why


class AudienceMismatchError(AuthenticationError):
    """The TokenReview did not confirm the audience this issuer requires."""

    reason = "audience_mismatch"

    def __init__(self, audience: str, returned: tuple[str, ...]) -> None:
        super().__init__(
            f"the token is not for audience {audience!r} (reviewed audiences: {list(returned)})"
        )
        self.audience = audience
        self.returned = returned


class BoundPodNotFoundError(AuthenticationError):
    """The pod the token is bound to does not exist (any more)."""

    reason = "bound_pod_not_found"

    def __init__(self, namespace: str, pod_name: str) -> None:
        super().__init__(f"the token's pod {namespace}/{pod_name} does not exist")
        self.namespace = namespace
        self.pod_name = pod_name


class BoundPodUidMismatchError(AuthenticationError):
    """A pod of the token's pod name exists, but it is another pod (a new UID)."""

    reason = "bound_pod_uid_mismatch"

    def __init__(self, namespace: str, pod_name: str, *, token_uid: str, pod_uid: str) -> None:
        super().__init__(
            f"the token is bound to pod {namespace}/{pod_name} with UID {token_uid}, which now has UID {pod_uid}"
        )
        self.namespace = namespace
        self.pod_name = pod_name
        self.token_uid = token_uid
        self.pod_uid = pod_uid


class NodeNotFoundError(AuthenticationError):
    """The node the token's pod runs on is not a node of the cluster, or the pod is not scheduled yet."""

    reason = "node_not_found"

    def __init__(self, node_name: str) -> None:
        super().__init__(f"node {node_name!r} is not known to the cluster")
        self.node_name = node_name


class AgentSvidInvalidError(AuthenticationError):
    """The agent SVID no longer verifies against the current bundle and clock (expired, authority revoked).

    OpenSSL checked the chain when the connection was made; this is the check on every request, so a kept-alive
    or resumed connection cannot carry a credential past its life.
    """

    reason = "agent_svid_invalid"

    def __init__(self, why: str) -> None:
        super().__init__(f"the agent SVID is no longer valid: {why}")
        self.why = why


class AgentSvidSupersededError(AuthenticationError):
    """An agent SVID that is neither the agent's current one nor the one just issued to it (a copy, or retired)."""

    reason = "agent_svid_superseded"

    def __init__(self, agent_id: str, serial: str) -> None:
        super().__init__(
            f"the agent SVID with serial {serial} of {agent_id} was superseded by a newer one"
        )
        self.agent_id = agent_id
        self.serial = serial


class AgentNotAttestedError(AuthenticationError):
    """No attested agent holds this ID: it was evicted (or never attested); it must attest again."""

    reason = "agent_not_attested"

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"{agent_id} is not an attested agent (evicted?); attest again")
        self.agent_id = agent_id


class AgentNodeGoneError(AuthenticationError):
    """A Kubernetes agent's node was deleted, or replaced by another node of the same name, since it attested."""

    reason = "agent_node_gone"

    def __init__(self, node_name: str, *, attested_uid: str, current_uid: str) -> None:
        now = f"now has UID {current_uid}" if current_uid else "no longer exists"
        super().__init__(f"node {node_name!r} attested with UID {attested_uid} and {now}")
        self.node_name = node_name
        self.attested_uid = attested_uid
        self.current_uid = current_uid


class ClientCertificateRequiredError(AuthenticationError):
    """An agent endpoint was called without a valid agent SVID as the TLS client certificate."""

    reason = "client_certificate_required"

    def __init__(self, why: str) -> None:
        super().__init__(f"an agent SVID is required as the client certificate: {why}")
        self.why = why


class JoinTokenInvalidError(AuthenticationError):
    """A join token that does not exist, has expired or was already spent (the three are not told apart)."""

    reason = "join_token_invalid"

    def __init__(self) -> None:
        super().__init__("the join token is unknown, expired or already used")
