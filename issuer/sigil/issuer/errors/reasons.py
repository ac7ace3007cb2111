"""The issuer's root error and the one table from a refusal's ``reason`` to its HTTP answer.

The HTTP edge answers every refusal as RFC 9457 ``application/problem+json`` whose ``reason`` member a client may
branch on, so the codes in :data:`PROBLEMS` are part of the wire contract: never rename one. It is the only place
that says which status a reason gets; :func:`problem_for` also maps the CA's errors the issuer lets through. The
client reads the same table to turn a problem back into the error class that raised it.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import ClassVar, Final, Self

from sigil.ca.errors import (
    DatastoreError,
    KeyStoreError,
    MalformedCsrError,
    SigilError,
    SigningUnavailableError,
)

__all__ = [
    "PROBLEMS",
    "IssuerError",
    "Problem",
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
        "datastore_unavailable": Problem(HTTPStatus.SERVICE_UNAVAILABLE, "Datastore unavailable"),
        "key_store_unavailable": Problem(HTTPStatus.SERVICE_UNAVAILABLE, "Key store unavailable"),
        "internal_error": Problem(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error"),
    }
)


def problem_for(error: SigilError) -> tuple[str, Problem]:
    """The reason code and HTTP answer for any Sigil error that reaches the issuer's edge."""
    if isinstance(error, IssuerError):
        reason = error.reason
    elif isinstance(error, MalformedCsrError):
        reason = "malformed_csr"
    elif isinstance(error, SigningUnavailableError):
        # The signing workers died twice over one batch (the pool restarted them): transient, like a 503 should be.
        reason = "unavailable"
    elif isinstance(error, DatastoreError):
        # The database failed (the datastore layer translated the driver's exception): try again, maybe elsewhere.
        reason = "datastore_unavailable"
    elif isinstance(error, KeyStoreError):
        # An authority key could not be written or read (a full disk): the step can be taken again once fixed.
        reason = "key_store_unavailable"
    else:
        reason = "internal_error"
    return reason, PROBLEMS[reason]


class IssuerError(SigilError):
    """Something the issuer refused or could not do; ``reason`` is the stable code, ``detail`` the human text."""

    reason: ClassVar[str] = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        #: Set by the client on a refusal it received: the serial number of the agent SVID it presented on the
        #: refused request (None when it presented none). An agent that has moved on to a new SVID meanwhile
        #: must not take a refusal of the old one for a refusal of the new one.
        self.presented_serial: int | None = None

    @property
    def status(self) -> HTTPStatus:
        return PROBLEMS[self.reason].status

    def __copy__(self) -> Self:
        # A fresh exception with the same fields and no traceback, so a cached refusal can be raised again and
        # again without keeping alive the frames (and the token in them) of the first raise.
        clone = type(self).__new__(type(self), *self.args)
        clone.__dict__.update(self.__dict__)
        return clone
