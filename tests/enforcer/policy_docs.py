"""Builders of policy documents as a user writes them, shared by the enforcer's tests."""

from __future__ import annotations

from typing import Any

import yaml

API_VERSION = "authz.sigil.dev/v1alpha1"

Doc = dict[str, Any]


def sa(name: str, namespace: str | None = None) -> Doc:
    """A ServiceAccount source."""
    account = {"name": name} if namespace is None else {"namespace": namespace, "name": name}
    return {"type": "ServiceAccount", "serviceAccount": account}


def spiffe(value: str) -> Doc:
    """A SPIFFE source."""
    return {"type": "SPIFFE", "spiffe": value}


def anyone() -> Doc:
    """The source matching every peer, with or without an SVID (a rule must name a criterion)."""
    return {"type": "Any"}


def rule(
    sources: list[Doc] | None = None, *, ports: list[int] | None = None, action: str | None = None
) -> Doc:
    """A rule; ``sources`` None leaves the field out (any peer)."""
    raw: Doc = {} if action is None else {"action": action}
    if sources is not None:
        raw["sources"] = sources
    if ports is not None:
        raw["networkAttributes"] = {"ports": ports}
    return raw


def ap(
    name: str,
    *,
    namespace: str = "shop",
    action: str = "ALLOW",
    match: dict[str, str] | None = None,
    rules: list[Doc] | None = None,
    dry_run: bool = False,
    scope: str | None = None,
    target_ports: list[int] | None = None,
) -> Doc:
    """An AuthorizationPolicy selecting pods by ``match`` labels ({} = every pod), optionally with the
    ``spec.scope`` and ``targetRefs[].ports`` extensions."""
    target: Doc = {"group": "", "kind": "Pod", "selector": {"matchLabels": match or {}}}
    if target_ports is not None:
        target["ports"] = target_ports
    spec: Doc = {"targetRefs": [target], "action": action, "enforcementLevel": "Network"}
    if scope is not None:
        spec["scope"] = scope
    if rules is not None:
        spec["rules"] = rules
    if dry_run:
        spec["dryRun"] = True
    return {
        "apiVersion": API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cap(
    name: str,
    *,
    tier: str = "Admin",
    priority: int = 10,
    namespaces: dict[str, str] | None = None,
    pods: dict[str, str] | None = None,
    rules: list[Doc] | None = None,
    dry_run: bool = False,
) -> Doc:
    """A ClusterAuthorizationPolicy selecting namespaces and pods by labels ({} = all)."""
    spec: Doc = {
        "tier": tier,
        "priority": priority,
        "namespaceSelector": {"matchLabels": namespaces or {}},
        "rules": rules or [],
    }
    if pods is not None:
        spec["podSelector"] = {"matchLabels": pods}
    if dry_run:
        spec["dryRun"] = True
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def dump(*docs: Doc) -> str:
    """Documents as one multi-document YAML file."""
    return yaml.safe_dump_all(docs, sort_keys=False)


def authenticated(*trust_domains: str) -> Doc:
    """``type: Authenticated``, optionally limited to ``trust_domains``."""
    source: Doc = {"type": "Authenticated"}
    if trust_domains:
        source["authenticated"] = {"trustDomains": list(trust_domains)}
    return source


def same_namespace() -> Doc:
    """``type: SameNamespace``."""
    return {"type": "SameNamespace"}


def namespaces(match: dict[str, str]) -> Doc:
    """``type: Namespaces`` selecting namespaces by ``match`` labels."""
    return {"type": "Namespaces", "namespaces": {"selector": {"matchLabels": match}}}


def network_rule(
    sources: list[Doc] | None = None, *, action: str | None = None, **network: Any
) -> Doc:
    """A rule with ``networkAttributes`` spelled as keyword arguments (``sourceCIDRs=[...]``, ...)."""
    raw = rule(sources, action=action)
    raw["networkAttributes"] = network
    return raw


def spiffe_pattern(pattern: str) -> Doc:
    """``type: SPIFFEPattern``."""
    return {"type": "SPIFFEPattern", "spiffePattern": pattern}


def all_of(*members: Doc) -> Doc:
    """``type: AllOf`` over ``members``."""
    return {"type": "AllOf", "allOf": list(members)}


def excluding(raw: Doc, *not_sources: Doc) -> Doc:
    """``raw`` (a rule) with ``notSources``."""
    return {**raw, "notSources": list(not_sources)}
