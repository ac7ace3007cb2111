"""The fields of an Istio rule: which are L4, which HTTP-only, which L4 but beyond Sigil; raw-value access.

The lists follow istio/api ``security/v1beta1/authorization_policy.proto`` (Source, Operation, Condition) and the
attribute names of istio/istio ``pilot/pkg/security/authz/model/model.go``. An unknown field or attribute is
an error, as in Istio's validation, rather than something to skip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "L4_SOURCE",
    "RuleError",
    "check_known",
    "l7_fields",
    "list_of",
    "mapping_of",
    "strings_of",
]

_HTTP_SOURCE = {
    "requestPrincipals": "JWT request principals",
    "notRequestPrincipals": "JWT request principals",
}
_HTTP_OPERATION = {
    "hosts": "HTTP Host headers",
    "notHosts": "HTTP Host headers",
    "methods": "HTTP methods",
    "notMethods": "HTTP methods",
    "paths": "HTTP paths",
    "notPaths": "HTTP paths",
}
L4_SOURCE = (
    "principals",
    "notPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
)
_WHEN_L4 = (
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
)
_WHEN_UNSAYABLE = {"destination.ip": "the destination address", "connection.sni": "the TLS SNI"}


class RuleError(ValueError):
    """A rule Istio itself would reject (unknown field or attribute, bad value); the message names the path."""


def l7_fields(
    sources: Sequence[Mapping[str, Any]],
    operations: Sequence[Mapping[str, Any]],
    conditions: Sequence[Mapping[str, Any]],
    path: str,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    http: list[tuple[str, str]] = []
    unsayable: list[tuple[str, str]] = []
    for i, entry in enumerate(sources):
        source = mapping_of(entry.get("source") or {}, f"{path}.from[{i}].source")
        check_known(source, (*L4_SOURCE, *_HTTP_SOURCE), f"{path}.from[{i}].source")
        http += [
            (f"{path}.from[{i}].source.{k}", v) for k, v in _HTTP_SOURCE.items() if source.get(k)
        ]
    for i, entry in enumerate(operations):
        operation = mapping_of(entry.get("operation") or {}, f"{path}.to[{i}].operation")
        check_known(operation, ("ports", "notPorts", *_HTTP_OPERATION), f"{path}.to[{i}].operation")
        http += [
            (f"{path}.to[{i}].operation.{k}", v)
            for k, v in _HTTP_OPERATION.items()
            if operation.get(k)
        ]
    for i, condition in enumerate(conditions):
        key = condition.get("key")
        where = f"{path}.when[{i}]"
        if not isinstance(key, str) or not key:
            raise RuleError(f"{where}.key: required, an attribute name")
        if not condition.get("values") and not condition.get("notValues"):
            continue
        if key.startswith("request."):
            http.append((where, f"the request attribute {key}"))
        elif key in _WHEN_UNSAYABLE:
            unsayable.append((where, _WHEN_UNSAYABLE[key]))
        elif key.startswith("experimental.envoy.filters."):
            unsayable.append((where, f"Envoy filter metadata ({key})"))
        elif key != "destination.port" and key not in _WHEN_L4:
            raise RuleError(f"{where}.key: unknown attribute {key!r}")
    return http, unsayable


def mapping_of(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RuleError(f"{path}: expected a mapping, got {type(value).__name__}")
    return value


def list_of(raw: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RuleError(f"{path}.{key}: expected a list, got {type(value).__name__}")
    return value


def strings_of(raw: Mapping[str, Any], key: str, path: str) -> list[str]:
    values = list_of(raw, key, path)
    for index, value in enumerate(values):
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise RuleError(f"{path}.{key}[{index}]: expected a string, got {type(value).__name__}")
    return [str(v) for v in values]


def check_known(raw: Mapping[str, Any], fields: Sequence[str], path: str) -> None:
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise RuleError(f"{path}: unknown field {unknown[0]!r} (known: {', '.join(fields)})")
