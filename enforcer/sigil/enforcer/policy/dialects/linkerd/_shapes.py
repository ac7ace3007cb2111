"""The shapes of the Linkerd fields the translator reads, checked once when the batch is read.

Linkerd's CRD schemas make the API server refuse a malformed object, so such an object never reaches Linkerd's
policy controller. Files are not checked by anyone, so the translator checks the fields it reads (types only;
which values make sense is judged where each field is translated) and refuses an object that does not fit,
naming the field: the rest of the translator can then read fields without guarding every access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["shape_error"]


class _Labels:
    """A map of label keys to label values (strings)."""


_SELECTOR: dict[str, Any] = {
    "matchLabels": _Labels,
    "matchExpressions": [{"key": str, "operator": str, "values": [str]}],
}
_REF: dict[str, Any] = {"group": str, "kind": str, "name": str, "namespace": str}
_NETWORK: dict[str, Any] = {"cidr": str, "except": [str]}

_SPECS: dict[str, dict[str, Any]] = {
    "Server": {
        "podSelector": _SELECTOR,
        "port": (int, str),
        "accessPolicy": str,
        "proxyProtocol": str,
    },
    "AuthorizationPolicy": {"targetRef": _REF, "requiredAuthenticationRefs": [_REF]},
    "MeshTLSAuthentication": {"identities": [str], "identityRefs": [_REF]},
    "NetworkAuthentication": {"networks": [_NETWORK]},
    "ServerAuthorization": {
        "server": {"name": str, "selector": _SELECTOR},
        "client": {
            "networks": [_NETWORK],
            "unauthenticated": bool,
            "meshTLS": {
                "unauthenticatedTLS": bool,
                "identities": [str],
                "serviceAccounts": [{"name": str, "namespace": str}],
            },
        },
    },
}


def shape_error(kind: str, spec: object) -> tuple[str, str] | None:
    """The path and complaint of the first field of ``spec`` that does not fit ``kind``'s shape, or None."""
    return _check(spec, _SPECS.get(kind, {}), "spec")


def _check(value: object, shape: Any, path: str) -> tuple[str, str] | None:
    if value is None:
        return None  # an omitted field, written out as null
    if shape is _Labels:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return path, "expected a map of label names to string values"
        return None
    if isinstance(shape, dict):
        if not isinstance(value, Mapping):
            return path, "expected a mapping"
        for key, inner in shape.items():
            found = _check(value.get(key), inner, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return path, "expected a list"
        for index, item in enumerate(value):
            if item is None:
                return f"{path}[{index}]", "expected a value, found null"
            found = _check(item, shape[0], f"{path}[{index}]")
            if found is not None:
                return found
        return None
    types = shape if isinstance(shape, tuple) else (shape,)
    # bool is an int in Python; a port or a count is never true or false.
    if isinstance(value, bool) and bool not in types:
        return path, f"expected {_names(types)}, found a boolean"
    if not isinstance(value, types):
        return path, f"expected {_names(types)}, found {type(value).__name__}"
    return None


def _names(types: tuple[type, ...]) -> str:
    words = {int: "an integer", str: "a string", bool: "a boolean"}
    return " or ".join(words.get(t, t.__name__) for t in types)
