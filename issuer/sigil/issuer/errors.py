"""Errors of the issuer, each with a stable machine ``reason`` and, in one table, its HTTP status.

The HTTP edge answers every refusal as RFC 9457 ``application/problem+json`` whose ``reason`` member a client may
branch on, so the codes below are part of the wire contract: never rename one. :data:`PROBLEMS` is the only place
that says which status a reason gets; :func:`problem_for` also maps the CA's errors the issuer lets through::

    SigilError
    └── IssuerError                           reason, detail
        ├── AuthenticationError                   401: the credential does not prove who the caller is
        │   ├── TokenMissingError                 token_missing
        │   ├── TokenNotAuthenticatedError        token_not_authenticated   (api_error: TokenReview's own words)
        │   ├── TokenNotBoundToPodError           token_not_bound_to_pod    (username)
        │   ├── AudienceMismatchError             audience_mismatch         (audience, returned)
        │   ├── BoundPodNotFoundError             bound_pod_not_found       (namespace, pod_name)
        │   ├── BoundPodUidMismatchError          bound_pod_uid_mismatch    (namespace, pod_name, token_uid, pod_uid)
        │   ├── NodeNotFoundError                 node_not_found            (node_name)
        │   ├── AgentSvidInvalidError             agent_svid_invalid        (why): expired, or its authority left the bundle
        │   ├── AgentSvidSupersededError          agent_svid_superseded     (agent_id, serial)
        │   ├── AgentNotAttestedError             agent_not_attested        (agent_id): evicted, or never attested
        │   └── AgentNodeGoneError                agent_node_gone           (node_name, attested_uid, current_uid)
        ├── AuthorizationError                    403: the caller is known but may not have this
        │   ├── ServiceAccountNotAllowedError     service_account_not_allowed (namespace, service_account)
        │   ├── AgentBannedError                  agent_banned              (agent_id)
        │   ├── NotEntitledError                  not_entitled              (spiffe_id)
        │   ├── PodNotFoundError                  pod_not_found             (namespace, pod_name)
        │   ├── PodUidMismatchError               pod_uid_mismatch          (namespace, pod_name, requested_uid, pod_uid)
        │   └── PodOnOtherNodeError               pod_on_other_node         (namespace, pod_name, node_name, agent_node)
        ├── KubernetesUnavailableError            503 kubernetes_unavailable (operation); fail closed, never cached
        ├── ConfigError                           500 invalid_config         (setting)
        ├── MalformedRequestError                 400 malformed_request      (why)
        ├── BodyTooLargeError                     413 body_too_large         (limit)
        ├── RateLimitedError                      429 rate_limited           (caller, retry_after)
        ├── NotFoundError                         404 not_found              (what)
        ├── AuthorityRefusedError                 409 authority_refused      (authority_id, why)
        ├── PolicyRefusedError                    422 policy_refused         (file, problems)
        └── UnavailableError                      503 unavailable            (why)

    (AuthenticationError also has ClientCertificateRequiredError ``client_certificate_required`` and
    JoinTokenInvalidError ``join_token_invalid``, both 401.)

The ``bound_*`` errors are about the pod a token is bound to (authentication); the unprefixed pod errors are about a
pod an agent asks an SVID for (authorization). Messages never contain a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import ClassVar, Final, Self

from sigil.ca.errors import MalformedCsrError, SigilError

__all__ = [
    "PROBLEMS",
    "AgentBannedError",
    "AgentNodeGoneError",
    "AgentNotAttestedError",
    "AgentSvidInvalidError",
    "AgentSvidSupersededError",
    "AudienceMismatchError",
    "AuthenticationError",
    "AuthorityRefusedError",
    "AuthorizationError",
    "BodyTooLargeError",
    "BoundPodNotFoundError",
    "BoundPodUidMismatchError",
    "ClientCertificateRequiredError",
    "ConfigError",
    "IssuerError",
    "JoinTokenInvalidError",
    "KubernetesUnavailableError",
    "MalformedRequestError",
    "NodeNotFoundError",
    "NotEntitledError",
    "NotFoundError",
    "PodNotFoundError",
    "PodOnOtherNodeError",
    "PodUidMismatchError",
    "PolicyRefusedError",
    "Problem",
    "RateLimitedError",
    "ServiceAccountNotAllowedError",
    "TokenMissingError",
    "TokenNotAuthenticatedError",
    "TokenNotBoundToPodError",
    "UnavailableError",
    "problem_for",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """How one reason is answered over HTTP (RFC 9457 ``status`` and ``title``)."""

    status: HTTPStatus
    title: str


#: reason -> HTTP answer. The one table; a test checks every error class's reason is in it.
PROBLEMS: Final = MappingProxyType(
    {
        "token_missing": Problem(HTTPStatus.UNAUTHORIZED, "No bearer token"),
        "token_not_authenticated": Problem(HTTPStatus.UNAUTHORIZED, "Token not authenticated"),
        "token_not_bound_to_pod": Problem(HTTPStatus.UNAUTHORIZED, "Token not bound to a pod"),
        "audience_mismatch": Problem(HTTPStatus.UNAUTHORIZED, "Token audience mismatch"),
        "bound_pod_not_found": Problem(HTTPStatus.UNAUTHORIZED, "Token's pod no longer exists"),
        "bound_pod_uid_mismatch": Problem(HTTPStatus.UNAUTHORIZED, "Token's pod was replaced"),
        "node_not_found": Problem(HTTPStatus.UNAUTHORIZED, "Token's node is unknown"),
        "agent_svid_invalid": Problem(HTTPStatus.UNAUTHORIZED, "Agent SVID no longer valid"),
        "agent_svid_superseded": Problem(
            HTTPStatus.UNAUTHORIZED, "Agent SVID superseded by a newer one"
        ),
        "agent_not_attested": Problem(HTTPStatus.UNAUTHORIZED, "Agent not attested (evicted?)"),
        "agent_node_gone": Problem(HTTPStatus.UNAUTHORIZED, "Agent's node is gone or replaced"),
        "agent_banned": Problem(HTTPStatus.FORBIDDEN, "Agent banned"),
        "service_account_not_allowed": Problem(HTTPStatus.FORBIDDEN, "Service account not allowed"),
        "not_entitled": Problem(HTTPStatus.FORBIDDEN, "Not entitled to this identity"),
        "pod_not_found": Problem(HTTPStatus.FORBIDDEN, "Pod not found"),
        "pod_uid_mismatch": Problem(HTTPStatus.FORBIDDEN, "Pod UID mismatch"),
        "pod_on_other_node": Problem(HTTPStatus.FORBIDDEN, "Pod runs on another node"),
        "malformed_csr": Problem(HTTPStatus.BAD_REQUEST, "Malformed CSR"),
        "kubernetes_unavailable": Problem(
            HTTPStatus.SERVICE_UNAVAILABLE, "Kubernetes API unavailable"
        ),
        "invalid_config": Problem(HTTPStatus.INTERNAL_SERVER_ERROR, "Invalid configuration"),
        "client_certificate_required": Problem(
            HTTPStatus.UNAUTHORIZED, "Agent SVID required as client certificate"
        ),
        "join_token_invalid": Problem(HTTPStatus.UNAUTHORIZED, "Join token invalid or spent"),
        "malformed_request": Problem(HTTPStatus.BAD_REQUEST, "Malformed request"),
        "body_too_large": Problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large"),
        "rate_limited": Problem(HTTPStatus.TOO_MANY_REQUESTS, "Rate limit exceeded"),
        "not_found": Problem(HTTPStatus.NOT_FOUND, "Not found"),
        "authority_refused": Problem(HTTPStatus.CONFLICT, "Authority step refused"),
        "policy_refused": Problem(HTTPStatus.UNPROCESSABLE_ENTITY, "Policy refused"),
        "unavailable": Problem(HTTPStatus.SERVICE_UNAVAILABLE, "Service unavailable"),
        "internal_error": Problem(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error"),
    }
)


def problem_for(error: SigilError) -> tuple[str, Problem]:
    """The reason code and HTTP answer for any Sigil error that reaches the issuer's edge."""
    if isinstance(error, IssuerError):
        reason = error.reason
    elif isinstance(error, MalformedCsrError):
        reason = "malformed_csr"
    else:
        reason = "internal_error"
    return reason, PROBLEMS[reason]


class IssuerError(SigilError):
    """Something the issuer refused or could not do; ``reason`` is the stable code, ``detail`` the human text."""

    reason: ClassVar[str] = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def status(self) -> HTTPStatus:
        return PROBLEMS[self.reason].status

    def __copy__(self) -> Self:
        # A fresh exception with the same fields and no traceback, so a cached refusal can be raised again and
        # again without keeping alive the frames (and the token in them) of the first raise.
        clone = type(self).__new__(type(self), *self.args)
        clone.__dict__.update(self.__dict__)
        return clone


class AuthenticationError(IssuerError):
    """The presented credential does not prove who the caller is (HTTP 401)."""


class AuthorizationError(IssuerError):
    """The caller is known but is not entitled to what it asked for (HTTP 403)."""


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


class AgentBannedError(AuthorizationError):
    """An operator banned this agent ID: its SVIDs and its attestations are refused until it is unbanned."""

    reason = "agent_banned"

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"{agent_id} is banned (sigil-server agent unban --id ...)")
        self.agent_id = agent_id


class ServiceAccountNotAllowedError(AuthorizationError):
    """The token authenticates a ServiceAccount that is not on the allow-list (for example, not a node agent)."""

    reason = "service_account_not_allowed"

    def __init__(self, namespace: str, service_account: str) -> None:
        super().__init__(f"service account {namespace}:{service_account} is not allowed")
        self.namespace = namespace
        self.service_account = service_account


class NotEntitledError(AuthorizationError):
    """The caller asked for an identity it may not hold."""

    reason = "not_entitled"

    def __init__(self, spiffe_id: str, why: str) -> None:
        super().__init__(f"not entitled to {spiffe_id}: {why}")
        self.spiffe_id = spiffe_id
        self.why = why


class PodNotFoundError(AuthorizationError):
    """An agent asked for a pod the issuer's pod cache does not hold."""

    reason = "pod_not_found"

    def __init__(self, namespace: str, pod_name: str) -> None:
        super().__init__(f"pod {namespace}/{pod_name} is not known")
        self.namespace = namespace
        self.pod_name = pod_name


class PodUidMismatchError(AuthorizationError):
    """An agent named a pod by name and UID, and the pod of that name has another UID."""

    reason = "pod_uid_mismatch"

    def __init__(self, namespace: str, pod_name: str, *, requested_uid: str, pod_uid: str) -> None:
        super().__init__(f"pod {namespace}/{pod_name} has UID {pod_uid}, not {requested_uid}")
        self.namespace = namespace
        self.pod_name = pod_name
        self.requested_uid = requested_uid
        self.pod_uid = pod_uid


class PodOnOtherNodeError(AuthorizationError):
    """An agent asked for a pod that runs on another node than its own."""

    reason = "pod_on_other_node"

    def __init__(self, namespace: str, pod_name: str, *, node_name: str, agent_node: str) -> None:
        super().__init__(
            f"pod {namespace}/{pod_name} runs on node {node_name or '(none)'!r}, not on the agent's node {agent_node!r}"
        )
        self.namespace = namespace
        self.pod_name = pod_name
        self.node_name = node_name
        self.agent_node = agent_node


class KubernetesUnavailableError(IssuerError):
    """The Kubernetes API could not be asked, so nothing is authenticated: the issuer fails closed (HTTP 503)."""

    reason = "kubernetes_unavailable"

    def __init__(self, operation: str, cause: str) -> None:
        super().__init__(f"the Kubernetes API is unavailable ({operation}): {cause}")
        self.operation = operation
        self.cause = cause


class ConfigError(IssuerError):
    """A setting that cannot work; raised while the configuration is built, before serving."""

    reason = "invalid_config"

    def __init__(self, setting: str, why: str) -> None:
        super().__init__(f"{setting}: {why}")
        self.setting = setting
        self.why = why


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


class MalformedRequestError(IssuerError):
    """A request body or parameter that does not follow the wire contract."""

    reason = "malformed_request"

    def __init__(self, why: str) -> None:
        super().__init__(f"malformed request: {why}")
        self.why = why


class BodyTooLargeError(IssuerError):
    """A request body larger than the server accepts."""

    reason = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class RateLimitedError(IssuerError):
    """A caller that asked faster than its rate; ``retry_after`` is in seconds."""

    reason = "rate_limited"

    def __init__(self, caller: str, retry_after: float) -> None:
        super().__init__(f"{caller} exceeded its request rate; retry in {retry_after:.1f}s")
        self.caller = caller
        self.retry_after = retry_after


class NotFoundError(IssuerError):
    """An admin request named something that does not exist (an entry, a path)."""

    reason = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist")
        self.what = what


class AuthorityRefusedError(IssuerError):
    """A manual authority step the CA refused (taint the active one, activate a revoked one, ...)."""

    reason = "authority_refused"

    def __init__(self, authority_id: str, why: str) -> None:
        super().__init__(why)
        self.authority_id = authority_id
        self.why = why


class PolicyRefusedError(IssuerError):
    """Policies sent to the admin API that break the schema; ``problems`` name the file, field and expectation."""

    reason = "policy_refused"

    def __init__(self, file: str, problems: tuple[str, ...]) -> None:
        super().__init__("; ".join(problems) if problems else f"{file}: refused")
        self.file = file
        self.problems = problems


class UnavailableError(IssuerError):
    """The server cannot answer now (no active authority yet, shutting down)."""

    reason = "unavailable"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
