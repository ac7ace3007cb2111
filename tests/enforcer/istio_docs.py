"""Builders of Istio AuthorizationPolicy documents as a mesh operator writes them, for the Istio tests."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def istio_ap(
    name: str,
    *,
    namespace: str = "shop",
    action: str | None = None,
    match: dict[str, str] | None = None,
    rules: list[Doc] | None = None,
    spec: Doc | None = None,
    dry_run: bool = False,
    version: str = "v1",
) -> Doc:
    """An Istio AuthorizationPolicy; ``rules`` None leaves the field out, ``spec`` replaces the whole spec."""
    body: Doc = {}
    if match is not None:
        body["selector"] = {"matchLabels": match}
    if action is not None:
        body["action"] = action
    if rules is not None:
        body["rules"] = rules
    metadata: Doc = {"name": name, "namespace": namespace}
    if dry_run:
        metadata["annotations"] = {"istio.io/dry-run": "true"}
    return {
        "apiVersion": f"security.istio.io/{version}",
        "kind": "AuthorizationPolicy",
        "metadata": metadata,
        "spec": body if spec is None else spec,
    }


def src(**fields: list[str]) -> Doc:
    """A ``from`` entry with one source of the given fields."""
    return {"source": dict(fields)}


def op(**fields: list[str]) -> Doc:
    """A ``to`` entry with one operation of the given fields."""
    return {"operation": dict(fields)}


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> Doc:
    """A ``when`` condition."""
    condition: Doc = {"key": key}
    if values is not None:
        condition["values"] = values
    if not_values is not None:
        condition["notValues"] = not_values
    return condition
