"""Linkerd's authorizations, each resolved once into the clients it admits and what it applies to.

An ``AuthorizationPolicy`` applies to one ``Server`` or to every Server of its own namespace, and admits the
clients that satisfy *all* its ``requiredAuthenticationRefs``. Linkerd allows at most one identity
authentication (a ``MeshTLSAuthentication`` or a ``ServiceAccount``) and at most one
``NetworkAuthentication`` per policy; its admission webhook refuses more, and its index ignores a policy that
has more or that names an authentication it cannot find (linkerd2 ``policy-controller/src/admission.rs`` and
``policy-controller/k8s/index/src/inbound/index.rs``, ``policy_client_authz``). A policy Linkerd ignores
authorizes nothing here either, with a finding. The legacy ``ServerAuthorization`` selects Servers by name or
labels and admits clients by identity or not at all; without ``networks`` it admits the cluster's networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.policy.dialects.base import Exactness, Finding, TranslateOptions
from sigil.enforcer.policy.dialects.linkerd._authn import (
    CLUSTER_NETWORKS,
    Client,
    Network,
    NetworkError,
    identity_source,
    parse_networks,
)
from sigil.enforcer.policy.dialects.linkerd._batch import Batch, LinkerdObject

__all__ = ["Authorization", "resolve_authorizations"]

_GROUP = "policy.linkerd.io"
_REF = "spec.requiredAuthenticationRefs"


@dataclass(frozen=True, slots=True)
class Authorization:
    """One authorization: its object, what it applies to, and the clients it admits (None: nobody).

    ``server`` is a Server name, ``server_labels`` a label selector over Servers (ServerAuthorization), and
    neither means every Server of the namespace.
    """

    obj: LinkerdObject
    client: Client | None
    server: str | None = None
    server_labels: Mapping[str, Any] | None = None
    authentications: tuple[LinkerdObject, ...] = ()

    def applies_to(self, server: LinkerdObject) -> bool:
        """True when this authorization authorizes traffic to ``server``."""
        if self.obj.namespace != server.namespace:
            return False
        if self.server is not None:
            return self.server == server.name
        if self.server_labels is not None:
            return _selects(self.server_labels, server.labels)
        return True


def resolve_authorizations(
    batch: Batch, options: TranslateOptions, findings: list[Finding]
) -> list[Authorization]:
    """Every AuthorizationPolicy and ServerAuthorization of ``batch`` that applies to Servers."""
    resolved = []
    for obj in batch.of_kind("AuthorizationPolicy"):
        found = _policy(obj, batch, options, findings)
        if found is not None:
            resolved.append(found)
    for obj in batch.of_kind("ServerAuthorization"):
        found = _server_authorization(obj, options, findings)
        if found is not None:
            resolved.append(found)
    return resolved


def _policy(
    obj: LinkerdObject, batch: Batch, options: TranslateOptions, findings: list[Finding]
) -> Authorization | None:
    target = obj.spec.get("targetRef")
    if not isinstance(target, Mapping):
        findings.append(obj.finding("spec.targetRef", Exactness.REFUSED, "missing; not translated"))
        return None
    kind, name = str(target.get("kind", "")), str(target.get("name", ""))
    if kind in ("HTTPRoute", "GRPCRoute"):
        findings.append(
            obj.finding(
                "spec.targetRef",
                Exactness.REFUSED,
                f"targets {kind} {name}: it would admit its clients to the requests that route matches (L7); "
                "Sigil decides per connection, so it is not translated and those clients are not admitted",
            )
        )
        return None
    server: str | None = None
    if kind == "Server" and target.get("group", _GROUP) == _GROUP:
        server = name
    elif kind != "Namespace" or target.get("group") not in (None, "", "core"):
        findings.append(
            obj.finding("spec.targetRef", Exactness.REFUSED, f"unsupported target kind {kind}")
        )
        return None
    elif name != obj.namespace:
        findings.append(
            obj.finding(
                "spec.targetRef.name",
                Exactness.REFUSED,
                f"targets namespace {name}, not its own; Linkerd refuses it, so it authorizes nothing",
            )
        )
        return None
    used: list[LinkerdObject] = []
    client = _required(obj, batch, options, findings, used)
    return Authorization(obj, client, server=server, authentications=tuple(used))


def _required(
    obj: LinkerdObject,
    batch: Batch,
    options: TranslateOptions,
    findings: list[Finding],
    used: list[LinkerdObject],
) -> Client | None:
    refs = obj.spec.get("requiredAuthenticationRefs") or []
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for index, ref in enumerate(refs if isinstance(refs, list) else [None]):
        kind = ref.get("kind") if isinstance(ref, Mapping) else None
        if kind not in (
            "MeshTLSAuthentication",
            "NetworkAuthentication",
            "ServiceAccount",
        ) or not ref.get("name"):
            _nothing(
                obj,
                f"{_REF}[{index}]",
                Exactness.REFUSED,
                "not a MeshTLSAuthentication, NetworkAuthentication or ServiceAccount ref with a name; "
                "Linkerd refuses the policy, so it authorizes nothing",
                findings,
            )
            return None
        by_kind.setdefault(str(kind), []).append(ref)
    identity_refs = by_kind.get("MeshTLSAuthentication", []) + by_kind.get("ServiceAccount", [])
    if len(identity_refs) > 1 or len(by_kind.get("NetworkAuthentication", [])) > 1:
        _nothing(
            obj,
            _REF,
            Exactness.REFUSED,
            "requires more than one identity authentication (MeshTLSAuthentication or ServiceAccount) or more "
            "than one NetworkAuthentication; Linkerd's admission refuses such a policy and its index ignores it",
            findings,
        )
        return None
    sources: tuple[dict[str, Any], ...] | None = None
    networks: tuple[Network, ...] | None = None
    for ref in identity_refs:
        namespace = str(ref.get("namespace") or obj.namespace)
        if ref["kind"] == "ServiceAccount":
            account = {"namespace": namespace, "name": str(ref["name"])}
            sources = ({"type": "ServiceAccount", "serviceAccount": account},)
            continue
        authn = batch.get("MeshTLSAuthentication", namespace, str(ref["name"]))
        if authn is None:
            _missing(obj, "MeshTLSAuthentication", namespace, str(ref["name"]), findings)
            return None
        used.append(authn)
        sources = _mesh_tls(authn, options, findings)
        if sources is None:
            _missing(obj, "MeshTLSAuthentication", namespace, str(ref["name"]), findings)
            return None
    for ref in by_kind.get("NetworkAuthentication", []):
        namespace = str(ref.get("namespace") or obj.namespace)
        authn = batch.get("NetworkAuthentication", namespace, str(ref["name"]))
        if authn is None:
            _missing(obj, "NetworkAuthentication", namespace, str(ref["name"]), findings)
            return None
        used.append(authn)
        try:
            networks = parse_networks(authn.spec.get("networks"))
        except NetworkError as err:
            findings.append(
                authn.finding("spec.networks", Exactness.REFUSED, f"{err}; not translated")
            )
            _missing(obj, "NetworkAuthentication", namespace, str(ref["name"]), findings)
            return None
    return Client(sources, networks)


def _mesh_tls(
    authn: LinkerdObject, options: TranslateOptions, findings: list[Finding]
) -> tuple[dict[str, Any], ...] | None:
    """The sources of a MeshTLSAuthentication, or None where Linkerd refuses it."""
    sources = []
    identities = authn.spec.get("identities") or []
    refs = authn.spec.get("identityRefs") or []
    if not identities and not refs:
        findings.append(
            authn.finding("spec", Exactness.EXACT, "names no identity; Linkerd ignores it")
        )
        return None
    for index, identity in enumerate(identities):
        found = identity_source(str(identity), options)
        if isinstance(found, str):
            findings.append(authn.finding(f"spec.identities[{index}]", Exactness.REFUSED, found))
        else:
            sources.append(found)
    for index, ref in enumerate(refs):
        path = f"spec.identityRefs[{index}]"
        kind = ref.get("kind") if isinstance(ref, Mapping) else None
        name = str(ref.get("name") or "") if isinstance(ref, Mapping) else ""
        if kind == "Namespace" and name:
            sources.append(
                {"type": "ServiceAccount", "serviceAccount": {"namespace": name, "name": "*"}}
            )
        elif kind == "ServiceAccount" and name == "*":
            # Linkerd builds the identity "*.<ns>.serviceaccount..." and matches it exactly: no client has it.
            findings.append(
                authn.finding(
                    path, Exactness.EXACT, "ServiceAccount named '*' matches no client in Linkerd"
                )
            )
        elif kind == "ServiceAccount" and name:
            namespace = str(ref.get("namespace") or authn.namespace)
            sources.append(
                {"type": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}
            )
        else:
            findings.append(
                authn.finding(
                    path,
                    Exactness.REFUSED,
                    "not a ServiceAccount or Namespace ref; Linkerd refuses it",
                )
            )
            return None
    return tuple(sources)


def _server_authorization(
    obj: LinkerdObject, options: TranslateOptions, findings: list[Finding]
) -> Authorization | None:
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
        _nothing(
            obj, "spec.client", Exactness.EXACT, "admits no client; Linkerd ignores it", findings
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
        for account in mesh.get("serviceAccounts") or []:
            namespace = str(account.get("namespace") or obj.namespace)
            found.append(
                {
                    "type": "ServiceAccount",
                    "serviceAccount": {"namespace": namespace, "name": str(account["name"])},
                }
            )
        sources = tuple(found)
    if name is not None:
        return Authorization(obj, Client(sources, networks), server=str(name))
    return Authorization(obj, Client(sources, networks), server_labels=selector)


def _missing(
    obj: LinkerdObject, kind: str, namespace: str, name: str, findings: list[Finding]
) -> None:
    _nothing(
        obj,
        _REF,
        Exactness.EXACT,
        f"requires {kind} {namespace}/{name}, which this batch does not hold (or Linkerd refuses); "
        "Linkerd then ignores the policy, so it authorizes nothing",
        findings,
    )
    return None


def _nothing(
    obj: LinkerdObject,
    path: str,
    exactness: Exactness,
    message: str,
    findings: list[Finding] | None = None,
) -> None:
    if findings is not None:
        findings.append(obj.finding(path, exactness, message))


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
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
