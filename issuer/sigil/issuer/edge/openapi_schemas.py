"""The JSON Schemas of the issuer's wire bodies, for its OpenAPI document (:mod:`sigil.issuer.edge.openapi`).

One schema per TypedDict of :mod:`sigil.issuer.agentapi.contract`, under the TypedDict's own name, with the same
members and the same required ones (a test compares them, so a field added to the contract without its schema
fails). Schemas are JSON Schema 2020-12, as OpenAPI 3.1 takes them (https://spec.openapis.org/oas/v3.1.0#schema-object).
"""

from __future__ import annotations

from typing import Any, Final

from sigil.issuer.agentapi.contract import MAX_BATCH
from sigil.issuer.errors import PROBLEMS

__all__ = ["SCHEMAS", "ref"]

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _object(
    required: dict[str, Schema], optional: dict[str, Schema] | None = None, **extra: Any
) -> Schema:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
        **extra,
    }


_TEXT: Final[Schema] = {"type": "string", "minLength": 1}
_STRING: Final[Schema] = {"type": "string"}
_PEM: Final[Schema] = {"type": "string", "minLength": 1, "description": "PEM text"}
_TIME: Final[Schema] = {"type": "string", "format": "date-time"}
_STRINGS: Final[Schema] = {"type": "array", "items": _STRING}
_LABELS: Final[Schema] = {"type": "object", "additionalProperties": _STRING}

SCHEMAS: Final[dict[str, Schema]] = {
    "ProblemBody": _object(
        {
            "type": _STRING,
            "title": _STRING,
            "status": {"type": "integer"},
            "detail": _STRING,
            "reason": {"type": "string", "enum": sorted(PROBLEMS)},
        },
        description="RFC 9457 problem details with the stable reason a client branches on.",
    ),
    "AttestK8sRequest": _object({"token": _TEXT, "cluster": _TEXT, "csr": _PEM}),
    "AttestJoinTokenRequest": _object({"token": _TEXT, "csr": _PEM}),
    "RenewRequest": _object({"csr": _PEM}),
    "X509SvidBody": _object(
        {"spiffe_id": _STRING, "chain_pem": _PEM, "expires_at": _TIME, "signer_ids": _STRINGS}
    ),
    "BundleDocument": {
        "type": "object",
        "description": "A SPIFFE bundle document (a JWK Set with spiffe_sequence and spiffe_refresh_hint).",
        "properties": {
            "keys": {"type": "array", "items": {"type": "object"}},
            "spiffe_sequence": {"type": "integer", "minimum": 0},
            "spiffe_refresh_hint": {"type": "integer", "minimum": 1},
        },
        "required": ["keys"],
    },
    "BundleResponse": _object(
        {
            "trust_domain": _STRING,
            "sequence": {"type": "integer"},
            "revision": _STRING,
            "bundle": ref("BundleDocument"),
            "federated": {"type": "object", "additionalProperties": ref("BundleDocument")},
            "tainted_authority_ids": _STRINGS,
        }
    ),
    "PolicyResponse": _object(
        {
            "revision": {"type": "integer"},
            "digest": _STRING,
            "policies": {"type": "array", "items": {"type": "object"}},
            "namespaces": {"type": "object", "additionalProperties": _LABELS},
        },
        {"origins": {"type": "array", "items": {"type": ["object", "null"]}}},
    ),
    "PolicyRef": _object({"kind": _TEXT, "namespace": _STRING, "name": _TEXT}),
    "PolicyDeltaResponse": _object(
        {
            "revision": {"type": "integer"},
            "digest": _STRING,
            "base_digest": _STRING,
            "policies": {"type": "array", "items": {"type": "object"}},
            "origins": {"type": "array", "items": {"type": ["object", "null"]}},
            "removed": {"type": "array", "items": ref("PolicyRef")},
            "namespaces": {"type": "object", "additionalProperties": _LABELS},
            "removed_namespaces": _STRINGS,
        },
        description="What changed since the set base_digest names; digest is the whole new set's.",
    ),
    "NodePodBody": _object(
        {
            "uid": _STRING,
            "namespace": _STRING,
            "name": _STRING,
            "service_account": _STRING,
            "labels": _LABELS,
        }
    ),
    "NodePodsResponse": _object(
        {
            "revision": _STRING,
            "node_name": _STRING,
            "pods": {"type": "array", "items": ref("NodePodBody")},
        }
    ),
    "AgentSvidResponse": _object({"svid": ref("X509SvidBody"), "bundle": ref("BundleResponse")}),
    "PodRef": _object({"namespace": _TEXT, "name": _TEXT, "uid": _TEXT}),
    "X509RequestItem": _object(
        {"csr": _PEM},
        {"pod": ref("PodRef"), "selectors": _STRINGS, "spiffe_id": _STRING},
        description="One workload: either pod or selectors, and a CSR for its key.",
    ),
    "X509BatchRequest": _object(
        {"requests": {"type": "array", "items": ref("X509RequestItem"), "maxItems": MAX_BATCH}}
    ),
    "X509ResultItem": _object(
        {},
        {"svids": {"type": "array", "items": ref("X509SvidBody")}, "problem": ref("ProblemBody")},
    ),
    "X509BatchResponse": _object({"results": {"type": "array", "items": ref("X509ResultItem")}}),
    "JwtSvidRequest": _object(
        {"audience": {"type": "array", "items": _TEXT, "minItems": 1}},
        {"pod": ref("PodRef"), "selectors": _STRINGS, "spiffe_id": _STRING},
    ),
    "JwtSvidBody": _object({"spiffe_id": _STRING, "token": _STRING, "expires_at": _TIME}),
    "JwtSvidResponse": _object({"svids": {"type": "array", "items": ref("JwtSvidBody")}}),
    "WorkloadX509Request": _object({"token": _TEXT, "csr": _PEM}),
}
