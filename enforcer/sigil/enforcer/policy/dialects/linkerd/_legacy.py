"""Linkerd's legacy ``ServerAuthorization`` (``policy.linkerd.io/v1beta1``), read into the clients it admits.

It selects Servers of its namespace by name or by labels, and admits clients by mesh identity (``identities``,
``serviceAccounts``), any client (``unauthenticated: true``), or any TLS client without a verified identity
(``unauthenticatedTLS``, which Sigil has no peer for: refused). Without ``networks`` Linkerd admits the cluster's
networks (linkerd2 ``policy-controller/grpc/src/inbound.rs``, ``to_authz``). A ServerAuthorization naming no
client is ignored by Linkerd's index (``policy-controller/k8s/index/src/inbound/server_authorization.rs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigil.enforcer.policy.dialects.base import Exactness, Finding, TranslateOptions
from sigil.enforcer.policy.dialects.linkerd._authn import (
    CLUSTER_NETWORKS,
    NO_CLIENT,
    Client,
    Network,
    NetworkError,
    account_source,
    identity_source,
    parse_networks,
)
from sigil.enforcer.policy.dialects.linkerd._batch import LinkerdObject

__all__ = ["selects", "server_authorization"]


def server_authorization(
    obj: LinkerdObject, options: TranslateOptions, findings: list[Finding]
) -> tuple[Client, str | None, Mapping[str, Any] | None] | None:
    """The clients ``obj`` admits and the Server name or label selector it applies to; None when nothing."""
    server = obj.spec.get("server") or {}
    name, selector = server.get("name"), server.get("selector")
    if (name is None) == (selector is None):
        findings.append(
            obj.finding("spec.server", Exactness.REFUSED, "needs exactly one of name and selector")
        )
        return None
    client = obj.spec.get("client") or {}
    raw_networks = client.get("networks")
    try:
        networks = (
            parse_networks(raw_networks) if raw_networks else tuple(map(Network, CLUSTER_NETWORKS))
        )
    except NetworkError as err:
        findings.append(
            obj.finding("spec.client.networks", Exactness.REFUSED, f"{err}; not translated")
        )
        return None
    if not raw_networks:
        findings.append(
            obj.finding(
                "spec.client.networks",
                Exactness.APPROXIMATE,
                f"omitted: Linkerd admits the cluster networks, taken to be its default ({', '.join(CLUSTER_NETWORKS)})",
            )
        )
    sources: tuple[dict[str, Any], ...] | None = None
    mesh = client.get("meshTLS")
    if client.get("unauthenticated") is True:
        sources = None
    elif not isinstance(mesh, Mapping):
        findings.append(
            obj.finding("spec.client", Exactness.EXACT, "admits no client; Linkerd ignores it")
        )
        return None
    elif mesh.get("unauthenticatedTLS"):
        findings.append(
            obj.finding(
                "spec.client.meshTLS.unauthenticatedTLS",
                Exactness.REFUSED,
                "admits TLS clients without a verified identity; Sigil has no such peer, so it is not translated",
            )
        )
        return None
    else:
        found = []
        for index, identity in enumerate(mesh.get("identities") or []):
            source = identity_source(str(identity), options)
            if isinstance(source, str):
                findings.append(
                    obj.finding(
                        f"spec.client.meshTLS.identities[{index}]", Exactness.REFUSED, source
                    )
                )
            else:
                found.append(source)
        for index, account in enumerate(mesh.get("serviceAccounts") or []):
            namespace = str(account.get("namespace") or obj.namespace)
            named = account_source(namespace, str(account.get("name") or ""), options)
            if isinstance(named, dict):
                found.append(named)
            else:
                exactness = Exactness.EXACT if named is None else Exactness.REFUSED
                path = f"spec.client.meshTLS.serviceAccounts[{index}]"
                findings.append(obj.finding(path, exactness, named or NO_CLIENT))
        sources = tuple(found)
    if name is not None:
        return Client(sources, networks), str(name), None
    return Client(sources, networks), None, selector


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """True when the label selector ``selector`` (as Kubernetes writes it) selects ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator = requirement.get("key"), requirement.get("operator")
        values = set(requirement.get("values") or [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True
