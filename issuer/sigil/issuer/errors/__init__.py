"""Errors of the issuer, each with a stable machine ``reason`` and, in one table, its HTTP status.

Import every name from here; the modules behind it are ``reasons`` (the root and the one reason -> HTTP table),
``authentication`` (401), ``authorization`` (403) and ``service`` (the rest).

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
    JoinTokenInvalidError ``join_token_invalid``, both 401. FederationError is a failed poll of a federated
    trust domain's bundle endpoint; it stays inside the poller and never reaches HTTP.)

The CA's errors the edge lets through have their reasons too: a malformed CSR answers 400 ``malformed_csr``, a
failed database (:class:`~sigil.ca.errors.DatastoreError`, raised by every store over the shared database) answers
503 ``datastore_unavailable``, an authority key that cannot be written or read
(:class:`~sigil.ca.errors.KeyStoreError`, a full disk) 503 ``key_store_unavailable`` with the key file and the
system's words as its detail, anything else 500 ``internal_error``.

The ``bound_*`` errors are about the pod a token is bound to (authentication); the unprefixed pod errors are about a
pod an agent asks an SVID for (authorization). Messages never contain a token.
"""

from __future__ import annotations

from sigil.issuer.errors.authentication import (
    AgentNodeGoneError,
    AgentNotAttestedError,
    AgentSvidInvalidError,
    AgentSvidSupersededError,
    AudienceMismatchError,
    AuthenticationError,
    BoundPodNotFoundError,
    BoundPodUidMismatchError,
    ClientCertificateRequiredError,
    JoinTokenInvalidError,
    NodeNotFoundError,
    TokenMissingError,
    TokenNotAuthenticatedError,
    TokenNotBoundToPodError,
)
from sigil.issuer.errors.authorization import (
    AgentBannedError,
    AuthorizationError,
    NotEntitledError,
    PodNotFoundError,
    PodOnOtherNodeError,
    PodUidMismatchError,
    ServiceAccountNotAllowedError,
)
from sigil.issuer.errors.reasons import PROBLEMS, IssuerError, Problem, problem_for
from sigil.issuer.errors.service import (
    AuthorityRefusedError,
    BodyTooLargeError,
    ConfigError,
    FederationError,
    KubernetesUnavailableError,
    MalformedRequestError,
    NotFoundError,
    PolicyRefusedError,
    RateLimitedError,
    UnavailableError,
)

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
    "FederationError",
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
