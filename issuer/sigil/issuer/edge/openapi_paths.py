"""The paths of the issuer's OpenAPI document: every route of the agent API and of the admin socket, with its body,
answer and refusals (:mod:`sigil.issuer.edge.openapi` assembles the document).

Refusals are listed by status; each is a problem document whose ``reason`` is one of the stable codes
(:data:`sigil.issuer.errors.PROBLEMS`). Admin paths are relative to :data:`~sigil.issuer.admin.contract.ADMIN_PREFIX`.
"""

from __future__ import annotations

from typing import Any, Final

from sigil.issuer.agentapi import contract
from sigil.issuer.edge.openapi_schemas import ref

__all__ = ["ADMIN_PATHS", "AGENT_PATHS", "operation"]

Operation = dict[str, Any]
_JSON: Final = "application/json"


def _schema(value: str | dict[str, Any]) -> dict[str, Any]:
    return ref(value) if isinstance(value, str) else value


def _refusals(*statuses: int) -> dict[str, Any]:
    problem = {contract.PROBLEM_CONTENT_TYPE: {"schema": ref("ProblemBody")}}
    return {str(s): {"description": "refused (see reason)", "content": problem} for s in statuses}


def operation(
    operation_id: str,
    summary: str,
    *,
    body: str | dict[str, Any] | None = None,
    answer: str | dict[str, Any] | None = None,
    status: int = 200,
    refusals: tuple[int, ...] = (400, 401, 403, 413, 429, 503),
    query: tuple[tuple[str, dict[str, Any]], ...] = (),
    tags: tuple[str, ...] = ("agent",),
    answer_type: str = _JSON,
) -> Operation:
    """One operation: its JSON body and answer (a component name or an inline schema), query and refusals."""
    result: Operation = {
        "operationId": operation_id,
        "summary": summary,
        "tags": list(tags),
        "responses": {
            str(status): {
                "description": "answered",
                **(
                    {"content": {answer_type: {"schema": _schema(answer)}}}
                    if answer is not None
                    else {}
                ),
            },
            **_refusals(*refusals),
        },
    }
    if body is not None:
        result["requestBody"] = {"required": True, "content": {_JSON: {"schema": _schema(body)}}}
    if query:
        result["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": s} for name, s in query
        ]
    return result


_NUMBER = {"type": "number", "minimum": 0}
_TEXT = {"type": "string"}
_OBJECT = {"type": "object"}
_ARRAY = {"type": "array", "items": _OBJECT}
_STRINGS = {"type": "array", "items": _TEXT}


def _admin_body(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
    }


_SECONDS = {"type": "number", "exclusiveMinimum": 0}
_ADMIN_TAGS = ("admin",)
_ADMIN_REFUSALS = (400, 404, 409, 413, 422, 503)


def _admin(
    operation_id: str, summary: str, *, refusals: tuple[int, ...] = _ADMIN_REFUSALS, **kwargs: Any
) -> Operation:
    return operation(operation_id, summary, tags=_ADMIN_TAGS, refusals=refusals, **kwargs)


def _verb(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _TEXT}


AGENT_PATHS: Final[dict[str, dict[str, Operation]]] = {
    contract.PATH_ATTEST_K8S: {
        "post": operation(
            "attestK8s",
            "Attest a node agent by its ServiceAccount token",
            body="AttestK8sRequest",
            answer="AgentSvidResponse",
        )
    },
    contract.PATH_ATTEST_JOIN_TOKEN: {
        "post": operation(
            "attestJoinToken",
            "Attest a node agent by a one-time join token",
            body="AttestJoinTokenRequest",
            answer="AgentSvidResponse",
        )
    },
    contract.PATH_RENEW: {
        "post": operation(
            "renewAgent",
            "Renew the calling agent's SVID",
            body="RenewRequest",
            answer="AgentSvidResponse",
        )
    },
    contract.PATH_X509_SVIDS: {
        "post": operation(
            "batchX509Svids",
            "X509-SVIDs for the agent's workloads, answered item by item",
            body="X509BatchRequest",
            answer="X509BatchResponse",
        )
    },
    contract.PATH_JWT_SVIDS: {
        "post": operation(
            "jwtSvids",
            "JWT-SVIDs for one of the agent's workloads",
            body="JwtSvidRequest",
            answer="JwtSvidResponse",
        )
    },
    contract.PATH_WORKLOAD_X509: {
        "post": operation(
            "workloadX509Svid",
            "An X509-SVID for a workload without an agent (its own token)",
            body="WorkloadX509Request",
            answer="X509SvidBody",
        )
    },
    contract.PATH_BUNDLE: {
        "get": operation(
            "bundle",
            "The trust bundles; agents may long-poll past a sequence or revision",
            answer="BundleResponse",
            query=(("after_sequence", _NUMBER), ("after_revision", _TEXT), ("wait", _NUMBER)),
        )
    },
    contract.PATH_POLICIES: {
        "get": operation(
            "policies",
            "The authorization policies in force, long-polled by revision; with held_digest, what changed",
            answer={"oneOf": [ref("PolicyResponse"), ref("PolicyDeltaResponse")]},
            query=(
                ("after_revision", _NUMBER),
                ("held_digest", {"type": "string", "pattern": "^[0-9a-f]{64}$"}),
                ("wait", _NUMBER),
            ),
        )
    },
    contract.PATH_NODE_PODS: {
        "get": operation(
            "nodePods",
            "The pods on the calling agent's node, long-polled by revision",
            answer="NodePodsResponse",
            query=(("after_revision", _TEXT), ("wait", _NUMBER)),
        )
    },
    "/.well-known/openid-configuration": {
        "get": operation(
            "openidConfiguration",
            "OIDC discovery for JWT-SVID consumers (when oidc_issuer is set)",
            answer=_OBJECT,
            refusals=(404,),
            tags=("oidc",),
        )
    },
    "/keys": {
        "get": operation(
            "jwks", "The JWT-SVID keys as a JWK Set", answer=_OBJECT, refusals=(), tags=("oidc",)
        )
    },
    "/live": {"get": operation("live", "Liveness", answer=_OBJECT, refusals=(), tags=("health",))},
    "/ready": {
        "get": operation(
            "ready",
            "Readiness (503 while not ready)",
            answer=_OBJECT,
            refusals=(),
            tags=("health",),
        )
    },
    "/metrics": {
        "get": operation(
            "metrics",
            "Prometheus metrics",
            answer=_TEXT,
            refusals=(),
            tags=("health",),
            answer_type="text/plain",
        )
    },
}

ADMIN_PATHS: Final[dict[str, dict[str, Operation]]] = {
    "/authorities": {
        "get": _admin("listAuthorities", "Every X.509 and JWT authority", answer=_ARRAY)
    },
    "/authorities/show": {
        "get": _admin(
            "showAuthority",
            "One authority and what it signed",
            answer=_OBJECT,
            query=(("authority_id", _TEXT),),
        )
    },
    "/authorities/{verb}": {
        "post": {
            **_admin(
                "authorityStep",
                "prepare, activate, taint or revoke an authority",
                answer=_OBJECT,
                body=_admin_body(
                    {"kind": _TEXT}, {"authority_id": _TEXT, "force": {"type": "boolean"}}
                ),
            ),
            "parameters": [_verb("verb")],
        }
    },
    "/upstream": {"get": _admin("upstreamShow", "The upstream authorities", answer=_ARRAY)},
    "/upstream/{verb}": {
        "post": {
            **_admin(
                "upstreamStep",
                "A step of the upstream authority's rotation",
                answer=_OBJECT,
                body=_admin_body({}, {"directory": _TEXT, "force": {"type": "boolean"}}),
            ),
            "parameters": [_verb("verb")],
        }
    },
    "/bundle": {
        "get": _admin(
            "bundle",
            "The trust bundle (format spiffe or pem)",
            # The bytes of a SPIFFE bundle document or of PEM, as the format asks: no one schema fits both.
            answer={"description": "a SPIFFE bundle document (JSON) or PEM certificates"},
            query=(("format", {"type": "string", "enum": ["spiffe", "pem"]}),),
            answer_type="application/octet-stream",
        )
    },
    "/x509/mint": {
        "post": _admin(
            "mintX509",
            "Mint an X509-SVID and its key",
            answer=_OBJECT,
            body=_admin_body({"spiffe_id": _TEXT}, {"ttl": _SECONDS, "dns": _STRINGS}),
        )
    },
    "/jwt/mint": {
        "post": _admin(
            "mintJwt",
            "Mint a JWT-SVID",
            answer=_OBJECT,
            body=_admin_body({"spiffe_id": _TEXT, "audience": _STRINGS}, {"ttl": _SECONDS}),
        )
    },
    "/entries": {
        "get": _admin("listEntries", "The registration entries", answer=_ARRAY),
        "post": _admin(
            "createEntry",
            "Create a registration entry",
            answer=_OBJECT,
            status=201,
            body=_admin_body(
                {"spiffe_id": _TEXT, "parent_id": _TEXT, "selectors": _STRINGS}, {"dns": _STRINGS}
            ),
        ),
    },
    "/entries/{entry_id}": {
        "delete": {
            **_admin("deleteEntry", "Delete a registration entry", answer=_OBJECT),
            "parameters": [_verb("entry_id")],
        }
    },
    "/tokens": {
        "post": _admin(
            "generateToken",
            "A one-time join token",
            answer=_OBJECT,
            body=_admin_body({}, {"ttl": _SECONDS}),
        )
    },
    "/policies": {
        "get": _admin("listPolicies", "The policies in force", answer=_OBJECT),
        "post": _admin(
            "applyPolicies",
            "Apply a policy file's documents",
            answer=_OBJECT,
            body=_admin_body({"file": _TEXT, "text": _TEXT}),
        ),
    },
    "/policies/effective": {
        "get": _admin(
            "effectivePolicy",
            "The effective policy of a pod",
            answer=_OBJECT,
            query=(("pod", _TEXT), ("labels", _TEXT), ("port", _TEXT), ("default", _TEXT)),
        )
    },
    "/policies/{kind}/{name}": {
        "delete": {
            **_admin(
                "deletePolicy",
                "Delete an admin-applied policy",
                answer=_OBJECT,
                query=(("namespace", _TEXT),),
            ),
            "parameters": [
                _verb("kind"),
                _verb("name"),
                {"name": "namespace", "in": "query", "required": False, "schema": _TEXT},
            ],
        }
    },
    "/agents": {"get": _admin("listAgents", "The attested agents", answer=_ARRAY)},
    "/agents/show": {
        "get": _admin("showAgent", "One agent", answer=_OBJECT, query=(("agent_id", _TEXT),))
    },
    "/agents/{verb}": {
        "post": {
            **_admin(
                "agentStep",
                "evict, ban or unban an agent",
                answer=_OBJECT,
                body=_admin_body({"agent_id": _TEXT}),
            ),
            "parameters": [
                {
                    "name": "verb",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["evict", "ban", "unban"]},
                }
            ],
        }
    },
    "/ready": {
        "get": _admin("adminReady", "The main listener's readiness", answer=_OBJECT, refusals=())
    },
}
